/// The proxy's decisions about one request, apart from any channel: what follows a refused
/// connection, a server that closed before answering, and an answer that is complete. The proxy
/// connection (Sources/SafeWatch/HTTPProxy.swift) carries them out.
public enum ProxyExchangePolicy {
    /// What follows a connection to a server that was refused or timed out: nothing reached it.
    public enum AfterRefusal: Equatable, Sendable {
        /// Route the request again after `pause`: a generation being replaced gets a moment to
        /// leave the router, or the next one time to come up.
        case retry(after: Duration)
        /// The request was held as long as a request with no healthy server is: 502.
        case badGateway
    }

    /// After the `attempts`th refusal, `sinceFirstRefusal` after the first: a generation that
    /// refuses is treated as one that is not there, so the request is held for at most `hold`.
    public static func afterRefusal(attempts: Int, sinceFirstRefusal: Duration, hold: Duration) -> AfterRefusal {
        if sinceFirstRefusal >= hold { return .badGateway }
        // 20 ms more per attempt, at most 250 (checked first: 20 × a huge count would overflow).
        return .retry(after: .milliseconds(attempts > 12 ? 250 : 20 * Int64(attempts)))
    }

    /// What follows a server connection that closed after the request went, before any answer.
    public enum AfterUnansweredClose: Equatable, Sendable {
        /// Send the request again, to whichever generation is active.
        case replay
        /// 502.
        case badGateway
    }

    /// Methods a client may safely see sent twice (RFC 9110 §9.2.2). POST never is.
    public static let idempotentMethods: Set<String> = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]

    /// The server closed a reused keep-alive connection just as the request went, or died on it.
    /// The request may have been acted on, so only one safe to repeat, with no body sent and no
    /// byte of an answer received, goes again, and once only: a request that kills its server
    /// every time gets its 502.
    public static func afterUnansweredClose(method: String, replays: Int, sentBody: Bool, answerBegan: Bool) -> AfterUnansweredClose {
        replays == 0 && !sentBody && !answerBegan && self.idempotentMethods.contains(method) ? .replay : .badGateway
    }

    /// How long a server connection may have sat idle and still carry a request that could not
    /// go again (`mayReuse`). Servers close idle keep-alive connections after a second or more
    /// (uvicorn 5 s, Node 5 s, gunicorn 2 s).
    public static let idleLimitForUnrepeatable: Duration = .milliseconds(300)

    /// How long a server connection may have sat idle to carry this request; nil: any. A server
    /// closing its idle connection just as a request goes leaves no telling whether it acted on
    /// it: a request safe to repeat is sent again (`afterUnansweredClose`), but a POST, or any
    /// request with a body, would get a 502. Those go on a connection that was just used, or a new one.
    public static func idleLimit(method: String, hasBody: Bool) -> Duration? {
        !hasBody && self.idempotentMethods.contains(method) ? nil : self.idleLimitForUnrepeatable
    }

    /// Whether a request may go on a server connection idle for `idleFor` (nil: fresh).
    public static func mayReuse(idleFor: Duration?, method: String, hasBody: Bool) -> Bool {
        // The time first: on a busy connection it decides, without hashing the method.
        guard let idleFor, idleFor >= self.idleLimitForUnrepeatable else { return true }
        return self.idleLimit(method: method, hasBody: hasBody) == nil
    }

    /// Which connections stay open once a response is complete.
    public struct AfterResponse: Equatable, Sendable {
        /// The server connection is kept for the client's next request.
        public var keepsServerConnection: Bool
        /// The client's connection stays open for its next request.
        public var keepsClientConnection: Bool

        public init(keepsServerConnection: Bool, keepsClientConnection: Bool) {
            self.keepsServerConnection = keepsServerConnection
            self.keepsClientConnection = keepsClientConnection
        }
    }

    /// `requestDone`: the request's body was all passed on; a server that answered before it was
    /// leaves the rest unread on both connections, where it would be taken for the next request.
    /// `extraBytes`: the server sent more than its answer, so its connection is in an unknown state.
    public static func afterResponse(serverKeeps: Bool, clientKeeps: Bool, requestDone: Bool, extraBytes: Bool) -> AfterResponse {
        AfterResponse(
            keepsServerConnection: serverKeeps && requestDone && !extraBytes,
            keepsClientConnection: clientKeeps && requestDone)
    }

    /// Whether closing the client's connection lingers: the proxy shuts its side once the answer
    /// is out and discards what the client still sends until it closes, because closing with
    /// unread bytes would reset the connection and a reset can destroy the answer before the
    /// client reads it. A client that asked to close, sent its whole request and nothing after it
    /// has nothing unread: its connection simply closes once the answer is out, as nginx does.
    public static func closeLingers(clientAskedToClose: Bool, requestDone: Bool, receivedMore: Bool) -> Bool {
        !(clientAskedToClose && requestDone && !receivedMore)
    }
}
