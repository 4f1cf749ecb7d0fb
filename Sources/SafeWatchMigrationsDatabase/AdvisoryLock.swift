/// sqlx's migration lock on PostgreSQL.
///
/// sqlx (`sqlx-postgres/src/migrate.rs`, `generate_lock_id`) takes `pg_advisory_lock(id)` for the
/// whole run, with `id = 0x3d32ad9e * crc32(current_database())`: the CRC is CRC-32/ISO-HDLC (the
/// zlib/Ethernet CRC: reflected polynomial 0xEDB88320, initial value and final XOR 0xFFFFFFFF) of
/// the UTF-8 database name, widened to a signed 64-bit integer before the multiplication. The
/// product stays below 2^63 (0x3d32ad9e × 0xFFFFFFFF ≈ 4.4e18), so it never overflows.
/// Taking the same id means safe-watch and a sqlx-based server never migrate the same database at
/// the same time.
public enum SQLxAdvisoryLock {
    /// The lock id sqlx uses for the database named `databaseName`.
    public static func id(forDatabase databaseName: String) -> Int64 {
        0x3d32_ad9e * Int64(crc32(Array(databaseName.utf8)))
    }

    /// CRC-32/ISO-HDLC (check value: `crc32("123456789") == 0xCBF43926`).
    public static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        return crc ^ 0xFFFF_FFFF
    }

    private static let table: [UInt32] = (0..<256).map { index -> UInt32 in
        var value = UInt32(index)
        for _ in 0..<8 {
            value = value & 1 == 1 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1
        }
        return value
    }
}
