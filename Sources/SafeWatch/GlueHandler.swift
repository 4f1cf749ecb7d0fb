import NIOCore

/// Joins two channels on the same event loop byte for byte: tcp mode's client and server
/// connections, and the proxy's tunnel for upgraded connections (WebSocket), which are no longer
/// HTTP once the server has answered 101.
///
/// With backpressure: a side is read only while the other side is writable (its buffered writes
/// are under the channel's write-buffer high water mark), so a slow reader on one end slows the
/// writer on the other end down to its pace instead of filling safe-watch's memory. The glue holds
/// back the `read` its channel asks for (autoRead's too) until the partner can take more, and
/// asks again once the partner becomes writable.
///
/// End of input (with `allowRemoteHalfClosure`, a peer's shutdown of its sending side) is passed on
/// as a shutdown of the partner's sending side once what was read before it is written, so a
/// client that sends its request and half-closes still gets the whole answer. A side that closes
/// closes its partner, again after what is buffered for it has been written.
final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    /// Bytes that arrived before the partner was joined.
    private var pending: [ByteBuffer] = []
    /// The channel asked to read while the partner could take nothing (or was not joined yet).
    private var readPending = false
    /// The input ended, or the channel closed, before the partner was joined.
    private var pendingEndOfInput = false
    private var pendingClose = false

    /// Joins `self` and `other` (call on their shared event loop). Until then neither side is read.
    func join(_ other: GlueHandler) {
        self.partner = other
        other.partner = self
        self.flushPending()
        other.flushPending()
        self.resumeReadingIfPartnerWritable()
        other.resumeReadingIfPartnerWritable()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.partner = nil
    }

    // MARK: Inbound: what this side's peer sent

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = self.unwrapInboundIn(data)
        if let partner = self.partner {
            partner.write(bytes)
        } else {
            self.pending.append(bytes)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.partner?.context?.flush()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            if let partner = self.partner {
                partner.shutDownOutputOnceWritten()
            } else {
                self.pendingEndOfInput = true
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let partner = self.partner {
            partner.closeOnceWritten()
        } else {
            self.pendingClose = true
        }
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { self.partner?.resumeReadingIfPartnerWritable() }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A reset or a failed write: this side is done; closing it closes the partner in turn.
        context.close(promise: nil)
    }

    // MARK: Outbound

    /// The channel wants more input: granted only while the partner can take it.
    func read(context: ChannelHandlerContext) {
        if let partner = self.partner, partner.isWritable {
            context.read()
        } else {
            self.readPending = true
        }
    }

    // MARK: Called by the partner

    private var isWritable: Bool {
        self.context?.channel.isWritable ?? false
    }

    private func write(_ bytes: ByteBuffer) {
        self.context?.write(self.wrapOutboundOut(bytes), promise: nil)
    }

    /// The partner can take more: a read held back is let through.
    private func resumeReadingIfPartnerWritable() {
        guard self.readPending, let partner = self.partner, partner.isWritable else { return }
        self.readPending = false
        self.context?.read()
    }

    /// The partner's input ended: end this side's output once what it sent before is written (a
    /// shutdown right away would drop it when this side's input has ended too, as that closes the
    /// channel). Writes complete in order, so an empty write's completion marks the point.
    private func shutDownOutputOnceWritten() {
        guard let context = self.context else { return }
        context.writeAndFlush(self.wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).assumeIsolated()
            .whenComplete { _ in context.close(mode: .output, promise: nil) }
    }

    /// The partner closed: close this side too, once what the partner sent before is written.
    private func closeOnceWritten() {
        guard let context = self.context else { return }
        context.writeAndFlush(self.wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).assumeIsolated()
            .whenComplete { _ in context.close(promise: nil) }
    }

    /// Hands the partner what arrived before the join, and how this side ended if it did.
    private func flushPending() {
        guard let partner = self.partner else { return }
        for bytes in self.pending { partner.write(bytes) }
        self.pending = []
        partner.context?.flush()
        if self.pendingClose {
            partner.closeOnceWritten()
        } else if self.pendingEndOfInput {
            partner.shutDownOutputOnceWritten()
        }
    }
}
