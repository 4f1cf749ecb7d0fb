import NIOCore

/// Joins two channels on the same event loop byte for byte: the proxy's tunnel for upgraded
/// connections (WebSocket), which are no longer HTTP once the server has answered 101.
final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    /// Bytes that arrived before the partner was joined.
    private var pending: [ByteBuffer] = []
    private var pendingClose = false

    /// Joins `self` and `other` (call on their shared event loop).
    func join(_ other: GlueHandler) {
        self.partner = other
        other.partner = self
        self.flushPending()
        other.flushPending()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = self.unwrapInboundIn(data)
        if let partner = self.partner {
            partner.send(bytes)
        } else {
            self.pending.append(bytes)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.partner?.context?.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let partner = self.partner {
            partner.context?.close(promise: nil)
        } else {
            self.pendingClose = true
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func send(_ bytes: ByteBuffer) {
        self.context?.write(self.wrapOutboundOut(bytes), promise: nil)
    }

    private func flushPending() {
        guard let partner = self.partner else { return }
        for bytes in self.pending { partner.send(bytes) }
        self.pending = []
        partner.context?.flush()
        if self.pendingClose { partner.context?.close(promise: nil) }
    }
}
