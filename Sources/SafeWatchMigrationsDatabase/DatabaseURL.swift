import Glibc

/// A database URL in sqlx's forms, parsed the way sqlx parses it (`PgConnectOptions::from_str`,
/// `SqliteConnectOptions::from_str`).
package enum DatabaseURL: Equatable, Sendable {
    case postgres(PostgresURL)
    case sqlite(SQLiteURL)

    /// `postgres://` / `postgresql://` or `sqlite:` / `sqlite://` / `sqlite::memory:`.
    package static func parse(_ text: String, environment: [String: String]) throws(MigrationDatabaseError) -> DatabaseURL {
        let accepted = "postgres://, postgresql:// and sqlite: URLs (sqlite://PATH, sqlite:PATH, sqlite::memory:)"
        guard let colon = text.firstIndex(of: ":") else {
            throw MigrationDatabaseError(
                .badURL, "'\(text)' is not a database URL: safe-watch accepts \(accepted)")
        }
        let scheme = text[..<colon].lowercased()
        switch scheme {
        case "postgres", "postgresql":
            return .postgres(try PostgresURL.parse(text, schemeEnd: colon, environment: environment))
        case "sqlite":
            return .sqlite(try SQLiteURL.parse(text))
        case "mysql", "mariadb":
            throw MigrationDatabaseError(
                .badURL, "\(scheme):// URLs are not supported: safe-watch works with PostgreSQL and SQLite, through \(accepted)")
        default:
            throw MigrationDatabaseError(
                .badURL, "unsupported database URL scheme '\(text[..<colon])': safe-watch accepts \(accepted)")
        }
    }
}

/// Where and how to connect to PostgreSQL.
package struct PostgresURL: Equatable, Sendable {
    package var host: String
    /// The directory of the server's unix socket, when the host is a path.
    package var socketDirectory: String?
    package var port: Int
    package var username: String
    package var password: String?
    package var database: String?
    /// disable, allow, prefer (sqlx's default), require, verify-ca, verify-full.
    package var sslMode: String
    package var sslRootCertificate: String?
    package var applicationName: String?
    package var options: String?

    /// The database the server opens: the URL's, else the user's name (as the server decides).
    package var databaseName: String { self.database ?? self.username }

    /// Where the server is, for messages: `host:port` or the socket path.
    package var endpoint: String {
        if let directory = self.socketDirectory { return socketPath(directory) }
        return self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }

    package func socketPath(_ directory: String) -> String {
        (directory.hasSuffix("/") ? directory : directory + "/") + ".s.PGSQL.\(self.port)"
    }

    /// A libpq connection URI (pg_dump, pg_restore, psql) without the password: pass it in
    /// PGPASSWORD, never on a command line others can read.
    package var libpqURL: String {
        var url = "postgresql://" + percentEncode(self.username) + "@"
        var query: [String] = []
        if let directory = self.socketDirectory {
            query.append("host=" + percentEncode(directory))
            query.append("port=\(self.port)")
        } else {
            url += (self.host.contains(":") ? "[\(self.host)]" : percentEncode(self.host)) + ":\(self.port)"
        }
        url += "/" + percentEncode(self.databaseName)
        query.append("sslmode=" + self.sslMode)
        if let root = self.sslRootCertificate { query.append("sslrootcert=" + percentEncode(root)) }
        if let name = self.applicationName { query.append("application_name=" + percentEncode(name)) }
        if let options = self.options { query.append("options=" + percentEncode(options)) }
        return url + "?" + query.joined(separator: "&")
    }

    static func parse(_ text: String, schemeEnd: String.Index, environment: [String: String]) throws(MigrationDatabaseError)
        -> PostgresURL
    {
        let afterColon = text[text.index(after: schemeEnd)...]
        guard afterColon.hasPrefix("//") else {
            throw MigrationDatabaseError(
                .badURL, "'\(redactPassword(text))' is not a PostgreSQL URL: expected postgres://USER:PASSWORD@HOST:PORT/DATABASE")
        }
        var rest = afterColon.dropFirst(2)
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        var queryText: Substring = ""
        if let question = rest.firstIndex(of: "?") {
            queryText = rest[rest.index(after: question)...]
            rest = rest[..<question]
        }
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let path = rest[authorityEnd...].drop(while: { $0 == "/" })

        // sqlx's defaults: the libpq environment variables, then built-ins.
        var url = PostgresURL(
            host: "", socketDirectory: nil, port: 5432, username: environment["PGUSER"] ?? currentUserName(),
            password: environment["PGPASSWORD"], database: environment["PGDATABASE"],
            sslMode: environment["PGSSLMODE"] ?? "prefer", sslRootCertificate: environment["PGSSLROOTCERT"],
            applicationName: environment["PGAPPNAME"], options: nil)
        if let port = environment["PGPORT"], let number = Int(port) { url.port = number }
        var host: String? = environment["PGHOST"]

        var hostPort = authority
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            hostPort = authority[authority.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                url.username = try decode(userInfo[..<colon], "user name")
                url.password = try decode(userInfo[userInfo.index(after: colon)...], "password")
            } else if !userInfo.isEmpty {
                url.username = try decode(userInfo, "user name")
            }
        }
        var hostText: Substring = hostPort
        var portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else {
                throw MigrationDatabaseError(.badURL, "the IPv6 address in '\(redactPassword(text))' has no closing ']'")
            }
            hostText = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() }
        } else if let colon = hostPort.lastIndex(of: ":") {
            hostText = hostPort[..<colon]
            portText = hostPort[hostPort.index(after: colon)...]
        }
        if !hostText.isEmpty { host = try decode(hostText, "host") }
        if let portText, !portText.isEmpty {
            guard let port = Int(portText), (1...65535).contains(port) else {
                throw MigrationDatabaseError(.badURL, "the port '\(portText)' in '\(redactPassword(text))' is not a port number")
            }
            url.port = port
        }
        if !path.isEmpty { url.database = try decode(path, "database name") }

        for pair in queryText.split(separator: "&") where !pair.isEmpty {
            let key: String
            let value: String
            if let equals = pair.firstIndex(of: "=") {
                key = try formDecode(pair[..<equals])
                value = try formDecode(pair[pair.index(after: equals)...])
            } else {
                key = try formDecode(pair)
                value = ""
            }
            switch key {
            case "sslmode", "ssl-mode":
                let modes = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
                guard modes.contains(value.lowercased()) else {
                    throw MigrationDatabaseError(
                        .badURL, "unknown sslmode '\(value)': use one of \(modes.joined(separator: ", "))")
                }
                url.sslMode = value.lowercased()
            case "sslrootcert", "ssl-root-cert", "ssl-ca": url.sslRootCertificate = value
            case "sslcert", "ssl-cert", "sslkey", "ssl-key":
                throw MigrationDatabaseError(
                    .badURL, "TLS client certificates (\(key)) are not supported by safe-watch: use password authentication")
            case "host":
                host = value
            case "hostaddr": host = value
            case "port":
                guard let port = Int(value), (1...65535).contains(port) else {
                    throw MigrationDatabaseError(.badURL, "the port '\(value)' in '\(redactPassword(text))' is not a port number")
                }
                url.port = port
            case "dbname": url.database = value
            case "user": url.username = value
            case "password": url.password = value
            case "application_name": url.applicationName = value
            case "options": url.options = url.options.map { $0 + " " + value } ?? value
            default:
                // sqlx warns and ignores unknown parameters (statement-cache-capacity, …).
                if key.hasPrefix("options["), key.hasSuffix("]") {
                    let name = key.dropFirst("options[".count).dropLast()
                    let option = "-c \(name)=\(value)"
                    url.options = url.options.map { $0 + " " + option } ?? option
                }
            }
        }
        if url.database?.isEmpty == true { url.database = nil }

        let finalHost = host ?? defaultHost(port: url.port)
        if finalHost.hasPrefix("/") {
            url.socketDirectory = finalHost
            url.host = "localhost"
        } else {
            url.host = finalHost
        }
        return url
    }

    /// sqlx's default host: the first directory holding the server's unix socket, else localhost.
    private static func defaultHost(port: Int) -> String {
        for directory in ["/var/run/postgresql", "/private/tmp", "/tmp"] {
            var info = stat()
            if stat("\(directory)/.s.PGSQL.\(port)", &info) == 0 { return directory }
        }
        return "localhost"
    }
}

/// Where the SQLite database is and how to open it.
package struct SQLiteURL: Equatable, Sendable {
    package enum Mode: String, Equatable, Sendable {
        /// `mode=rw` (sqlx's default): the file must exist.
        case readWrite
        /// `mode=rwc`: created if missing.
        case readWriteCreate
        /// `mode=ro`
        case readOnly
    }

    /// The file as written in the URL (percent-decoded); nil for an in-memory database.
    package var path: String?
    package var mode: Mode

    static func parse(_ text: String) throws(MigrationDatabaseError) -> SQLiteURL {
        var rest = Substring(text)
        // sqlx: trim_start_matches("sqlite://") then trim_start_matches("sqlite:").
        for prefix in ["sqlite://", "sqlite:"] {
            while rest.lowercased().hasPrefix(prefix) { rest = rest.dropFirst(prefix.count) }
        }
        var database = rest
        var parameters: Substring = ""
        if let question = rest.firstIndex(of: "?") {
            database = rest[..<question]
            parameters = rest[rest.index(after: question)...]
        }
        var url = SQLiteURL(path: nil, mode: .readWrite)
        var inMemory = database == ":memory:"
        for pair in parameters.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = try formDecode(parts[0])
            let value = parts.count > 1 ? try formDecode(parts[1]) : ""
            switch key {
            case "mode":
                switch value {
                case "ro": url.mode = .readOnly
                case "rw": url.mode = .readWrite
                case "rwc": url.mode = .readWriteCreate
                case "memory": inMemory = true
                default:
                    throw MigrationDatabaseError(.badURL, "unknown SQLite mode '\(value)' in '\(text)': use ro, rw, rwc or memory")
                }
            case "cache", "immutable", "vfs":
                continue
            default:
                throw MigrationDatabaseError(.badURL, "unknown query parameter '\(key)' in the SQLite URL '\(text)'")
            }
        }
        if !inMemory {
            let path = try decode(database, "file path")
            guard !path.isEmpty else {
                throw MigrationDatabaseError(
                    .badURL, "the SQLite URL '\(text)' names no file: use sqlite://PATH, sqlite:PATH or sqlite::memory:")
            }
            url.path = path
        }
        return url
    }
}

/// The URL with its password replaced by `***`, for messages.
package func redactPassword(_ url: String) -> String {
    guard let schemeEnd = url.firstRange(of: "://") else { return url }
    let afterScheme = url[schemeEnd.upperBound...]
    let authorityEnd = afterScheme.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? afterScheme.endIndex
    let authority = afterScheme[..<authorityEnd]
    guard let at = authority.lastIndex(of: "@") else { return url }
    let userInfo = authority[..<at]
    guard let colon = userInfo.firstIndex(of: ":") else { return url }
    return String(url[..<colon]) + ":***" + String(url[at...])
}

private func decode(_ text: Substring, _ what: String) throws(MigrationDatabaseError) -> String {
    guard let decoded = percentDecode(text, plusIsSpace: false) else {
        throw MigrationDatabaseError(.badURL, "the \(what) '\(text)' in the database URL is not valid percent-encoded UTF-8")
    }
    return decoded
}

private func formDecode(_ text: Substring) throws(MigrationDatabaseError) -> String {
    guard let decoded = percentDecode(text, plusIsSpace: true) else {
        throw MigrationDatabaseError(.badURL, "the parameter '\(text)' in the database URL is not valid percent-encoded UTF-8")
    }
    return decoded
}

private func percentDecode(_ text: Substring, plusIsSpace: Bool) -> String? {
    var bytes: [UInt8] = []
    var utf8 = Array(text.utf8)[...]
    while let byte = utf8.popFirst() {
        if byte == UInt8(ascii: "%"), utf8.count >= 2,
            let high = hexValue(utf8[utf8.startIndex]), let low = hexValue(utf8[utf8.startIndex + 1])
        {
            bytes.append(high << 4 | low)
            utf8 = utf8.dropFirst(2)
        } else if plusIsSpace && byte == UInt8(ascii: "+") {
            bytes.append(UInt8(ascii: " "))
        } else {
            bytes.append(byte)
        }
    }
    return String(validating: bytes, as: UTF8.self)
}

private func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
    default: return nil
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
package func percentEncode(_ text: String) -> String {
    var result = ""
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            result.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            let digits = Array("0123456789ABCDEF")
            result += "%" + String(digits[Int(byte >> 4)]) + String(digits[Int(byte & 0x0F)])
        }
    }
    return result
}

/// The effective user's login name (sqlx's `whoami::username()` default).
private func currentUserName() -> String {
    if let entry = getpwuid(geteuid()), let name = entry.pointee.pw_name { return String(cString: name) }
    return "postgres"
}
