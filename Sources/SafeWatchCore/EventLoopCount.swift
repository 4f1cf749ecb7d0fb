/// How many event loops safe-watch runs for its proxy, health probes and control socket: half the
/// cores, at least one.
///
/// safe-watch shares the machine with the server it supervises, the clients that load it and the
/// builds it starts. A loop beyond what the traffic needs is one more thread competing for the same
/// cores, and with more than one loop each accepted connection crosses to another thread to be
/// registered there. On 2 cores (B6, `bench/b6-proxy-overhead`), one loop served 1.04 × the
/// keep-alive and 1.18 × the new-connection throughput of two, with 9 % and 20 % less CPU per
/// request and a third of the added p99 on new connections; one loop still proxies tens of thousands
/// of requests a second. Two loops each accepting for itself (a `dup` of the listening socket per
/// loop, as nginx's workers share theirs) did no better: both wake for every connection, and new
/// connections went from 14,300 to 11,930 req/s at 85 rather than 57 µs of CPU each.
public func eventLoopCount(forCores cores: Int) -> Int {
    max(1, cores / 2)
}
