-- Wireshark / tshark dissector for BINFM (binfm testbed).
--
--   * every BINFM control message (UDP 7400 = super node, 7401 = end node), types 1-13,
--     with the ToALL Tx as a subtree: layouts in docs/binfm-wire.md, code in stack/src/wire/
--     {binfm,toall}.rs (the code is authoritative);
--   * call media: SRTP (RTP header, AES-GCM ciphertext + 16-byte tag) shares the EN's port
--     with the control messages. Like the ENs (stack/src/wire/rtp.rs `is_rtp`, RFC 7983) we
--     demultiplex by the first byte: 0x80..0xBF (RTP version 2) goes to Wireshark's own
--     `rtp` dissector, anything else is BINFM (which starts with 'B', 0x42). Behind a NAT
--     neither port is 7401, so a BINFM message found by the heuristic makes its UDP
--     conversation ours, and the call's RTP on the same ip:port pair follows;
--   * the testbed's DHCP site options 224 (NAT public IPv4 address) and 225 (super nodes,
--     6-byte IPv4 + port entries), docs/dhcp.md, as a "BINFM DHCP options" tree.
--
-- Install: copy to ~/.local/lib/wireshark/plugins/, or
--   tshark -X lua_script:scripts/wireshark/binfm.lua -r capture.pcapng -Y binfm
-- See scripts/wireshark/README.md.
--
-- Every read is length-checked first: a truncated or malformed datagram gets an expert
-- info (binfm.truncated / binfm.malformed / binfm.bad_value / binfm.trailing), never a
-- Lua error. Like the Rust parser, dissection stops at the first truncation; unlike it,
-- it goes on after a bad value (so you can see the rest of the bytes) and flags it.

local binfm = Proto("binfm", "BINFM")

-- Constants (stack/src/wire/binfm.rs, toall.rs) ------------------------------------------

local PORT_SN = 7400
local PORT_EN = 7401
local VERSION = 1
local TX_VERSION = 1
local MAX_Y_LEN = 512
local MAX_PART_DATA = 1200

local MSG_TYPES = {
    [1] = "TxSubmit",
    [2] = "TxAck",
    [3] = "Query",
    [4] = "Reply",
    [5] = "TxRelay",
    [6] = "BlockPart",
    [7] = "GetBlock",
    [8] = "TipAnnounce",
    [9] = "SessionRequest",
    [10] = "SessionResponse",
    [11] = "HandoverRequest",
    [12] = "KeyRenewal",
    [13] = "ControlAck",
    [14] = "KeyRenewalReply",
    [15] = "PathChallenge",
    [16] = "PathResponse",
    [20] = "Headers",
    [21] = "GetHeaders",
}

local ACK_STATUS = {
    [0] = "Accepted",
    [1] = "EndpointMismatch",
    [2] = "Rejected",
    [3] = "Duplicate",
}

local REJECT_REASONS = {
    [0] = "none",
    [1] = "address mismatch",
    [2] = "bad signature",
    [3] = "bad public key",
    [4] = "bad DH group",
    [5] = "bad Y",
    [6] = "stale seq",
    [7] = "malformed",
}

local DH_GROUPS = { [14] = "RFC 3526 MODP-2048" }

-- Fields ---------------------------------------------------------------------------------

local F = {
    magic = ProtoField.string("binfm.magic", "Magic"),
    version = ProtoField.uint8("binfm.version", "Version"),
    type = ProtoField.uint8("binfm.type", "Message type", base.DEC, MSG_TYPES),

    -- ToALL Tx (TxSubmit, TxRelay, Reply)
    tx = ProtoField.none("binfm.tx", "ToALL Tx"),
    tx_version = ProtoField.uint8("binfm.tx.version", "Tx version"),
    tx_hash_addr = ProtoField.bytes("binfm.tx.hash_addr", "Hash address"),
    tx_seq = ProtoField.uint64("binfm.tx.seq", "Sequence number"),
    tx_private_ip = ProtoField.ipv4("binfm.tx.private_ip", "Private IP"),
    tx_private_port = ProtoField.uint16("binfm.tx.private_port", "Private port"),
    tx_nat_ip = ProtoField.ipv4("binfm.tx.nat_ip", "NAT IP"),
    tx_nat_port = ProtoField.uint16("binfm.tx.nat_port", "NAT port"),
    tx_time = ProtoField.uint64("binfm.tx.time_ms", "Time (ms, sender's clock)"),
    tx_dh_group = ProtoField.uint16("binfm.tx.dh_group", "DH group", base.DEC, DH_GROUPS),
    tx_y_len = ProtoField.uint16("binfm.tx.y_len", "Y length"),
    tx_y = ProtoField.bytes("binfm.tx.y", "Y (g^X mod p)"),
    tx_public_key = ProtoField.bytes("binfm.tx.public_key", "Public key (ed25519)"),
    tx_signature = ProtoField.bytes("binfm.tx.signature", "Signature (ed25519)"),

    -- TxAck
    ack_tx_id = ProtoField.bytes("binfm.ack.tx_id", "Tx id"),
    ack_status = ProtoField.uint8("binfm.ack.status", "Status", base.DEC, ACK_STATUS),
    ack_reason = ProtoField.uint8("binfm.ack.reason", "Reason", base.DEC, REJECT_REASONS),
    ack_observed_ip = ProtoField.ipv4("binfm.ack.observed_ip", "Observed IP"),
    ack_observed_port = ProtoField.uint16("binfm.ack.observed_port", "Observed port"),

    -- Query
    query_request_id = ProtoField.uint32("binfm.query.request_id", "Request id"),
    query_hash_addr = ProtoField.bytes("binfm.query.hash_addr", "Hash address"),
    query_flags = ProtoField.uint8("binfm.query.flags", "Flags", base.HEX),
    query_want_unconfirmed = ProtoField.bool("binfm.query.want_unconfirmed", "Want unconfirmed",
        8, nil, 0x01),
    query_reserved = ProtoField.uint8("binfm.query.reserved", "Reserved bits", base.HEX, nil, 0xfe),

    -- Reply
    reply_request_id = ProtoField.uint32("binfm.reply.request_id", "Request id"),
    reply_hash_addr = ProtoField.bytes("binfm.reply.hash_addr", "Hash address"),
    reply_flags = ProtoField.uint8("binfm.reply.flags", "Flags", base.HEX),
    reply_found = ProtoField.bool("binfm.reply.found", "Found", 8, nil, 0x01),
    reply_has_tx = ProtoField.bool("binfm.reply.has_tx", "Confirmed Tx follows", 8, nil, 0x02),
    reply_has_unconfirmed = ProtoField.bool("binfm.reply.has_unconfirmed",
        "Unconfirmed Tx follows", 8, nil, 0x04),
    reply_has_proof = ProtoField.bool("binfm.reply.has_proof", "Proof follows", 8, nil, 0x08),
    reply_reserved = ProtoField.uint8("binfm.reply.reserved", "Reserved bits", base.HEX, nil, 0xf0),
    -- The Tx's inclusion proof (after the Txs), Headers, GetHeaders
    proof_header = ProtoField.bytes("binfm.proof.header", "Block header"),
    proof_index = ProtoField.uint16("binfm.proof.index", "Index in the block"),
    proof_depth = ProtoField.uint8("binfm.proof.depth", "Depth"),
    proof_sibling = ProtoField.bytes("binfm.proof.sibling", "Sibling"),
    headers_count = ProtoField.uint8("binfm.headers.count", "Count"),
    headers_header = ProtoField.bytes("binfm.headers.header", "Block header"),
    locator_hash = ProtoField.bytes("binfm.locator.hash", "Locator hash"),
    -- The height of the block holding the Tx (0 if not found); the SN's tip is at
    -- height + confirmations - 1 (docs/binfm-wire.md).
    reply_height = ProtoField.uint64("binfm.reply.height", "Height (block holding the Tx)"),
    reply_confirmations = ProtoField.uint32("binfm.reply.confirmations", "Confirmations"),

    -- BlockPart, GetBlock
    block_hash = ProtoField.bytes("binfm.block.hash", "Block hash"),
    block_part = ProtoField.uint16("binfm.block.part", "Part"),
    block_parts = ProtoField.uint16("binfm.block.parts", "Parts"),
    block_len = ProtoField.uint16("binfm.block.len", "Data length"),
    block_data = ProtoField.bytes("binfm.block.data", "Data"),

    -- TipAnnounce
    tip_hash = ProtoField.bytes("binfm.tip.hash", "Tip hash"),
    tip_height = ProtoField.uint64("binfm.tip.height", "Height"),
    tip_total_work = ProtoField.bytes("binfm.tip.total_work", "Total work (256-bit BE)"),

    -- SessionRequest, SessionResponse (EN <-> EN)
    session_caller = ProtoField.bytes("binfm.session.caller", "Caller (hash address)"),
    session_callee = ProtoField.bytes("binfm.session.callee", "Callee (hash address)"),
    session_nonce = ProtoField.bytes("binfm.session.nonce", "Nonce (sender's)"),
    session_ssrc = ProtoField.uint32("binfm.session.ssrc", "SSRC (sender's RTP stream)", base.HEX),
    session_confirm = ProtoField.bytes("binfm.session.confirm",
        "Key confirmation (HMAC-SHA256/128, control key)"),
    session_eph_len = ProtoField.uint16("binfm.session.ephemeral_len", "Ephemeral length"),
    session_eph = ProtoField.bytes("binfm.session.ephemeral", "Ephemeral DH value (this session)"),
    session_next_len = ProtoField.uint16("binfm.session.next_len", "Next ephemeral length"),
    session_next = ProtoField.bytes("binfm.session.next",
        "Next ephemeral DH value (for the peer's first key renewal)"),
    session_public_key = ProtoField.bytes("binfm.session.public_key", "Caller's ed25519 public key"),
    session_signature = ProtoField.bytes("binfm.session.signature", "Caller's ed25519 signature"),

    -- KeyRenewalReply
    rekey_reply_sender = ProtoField.bytes("binfm.rekey_reply.sender", "Sender (hash address)"),
    rekey_reply_counter = ProtoField.uint64("binfm.rekey_reply.counter", "Counter of the renewal answered"),
    rekey_reply_y_len = ProtoField.uint16("binfm.rekey_reply.y_len", "Next ephemeral length"),
    rekey_reply_y = ProtoField.bytes("binfm.rekey_reply.y", "Sender's next ephemeral DH value"),
    rekey_reply_mac = ProtoField.bytes("binfm.rekey_reply.mac", "MAC (HMAC-SHA256/128, new control key)"),

    -- PathChallenge, PathResponse
    path_sender = ProtoField.bytes("binfm.path.sender", "Sender (hash address)"),
    path_data = ProtoField.bytes("binfm.path.data", "Challenge data"),
    path_mac = ProtoField.bytes("binfm.path.mac", "MAC (HMAC-SHA256/128, control key)"),

    -- HandoverRequest
    handover_sender = ProtoField.bytes("binfm.handover.sender", "Sender (hash address)"),
    handover_counter = ProtoField.uint64("binfm.handover.counter", "Control counter"),
    handover_private_ip = ProtoField.ipv4("binfm.handover.private_ip", "New private IP"),
    handover_private_port = ProtoField.uint16("binfm.handover.private_port", "New private port"),
    handover_nat_ip = ProtoField.ipv4("binfm.handover.nat_ip", "New NAT IP"),
    handover_nat_port = ProtoField.uint16("binfm.handover.nat_port", "New NAT port"),
    handover_mac = ProtoField.bytes("binfm.handover.mac", "MAC (HMAC-SHA256/128, control key)"),

    -- KeyRenewal
    rekey_sender = ProtoField.bytes("binfm.rekey.sender", "Sender (hash address)"),
    rekey_counter = ProtoField.uint64("binfm.rekey.counter", "Control counter"),
    rekey_y_len = ProtoField.uint16("binfm.rekey.y_len", "Y' length"),
    rekey_y = ProtoField.bytes("binfm.rekey.y", "Y' (new g^X' mod p)"),
    rekey_mac = ProtoField.bytes("binfm.rekey.mac", "MAC (HMAC-SHA256/128, control key)"),

    -- ControlAck (binfm.ack.* is TxAck's)
    ctrl_ack_sender = ProtoField.bytes("binfm.ctrl_ack.sender", "Sender (hash address)"),
    ctrl_ack_counter = ProtoField.uint64("binfm.ctrl_ack.counter", "Acknowledged counter"),
    ctrl_ack_mac = ProtoField.bytes("binfm.ctrl_ack.mac", "MAC (HMAC-SHA256/128, control key)"),

    -- DHCP site options (added by the binfm_dhcp postdissector below)
    dhcp_nat_public = ProtoField.ipv4("binfm.dhcp.nat_public", "NAT public address (option 224)"),
    dhcp_super_node = ProtoField.string("binfm.dhcp.super_node", "Super node (option 225)"),
    dhcp_super_node_ip = ProtoField.ipv4("binfm.dhcp.super_node.ip", "Address"),
    dhcp_super_node_port = ProtoField.uint16("binfm.dhcp.super_node.port", "Port"),
}

local field_list = {}
for _, f in pairs(F) do
    field_list[#field_list + 1] = f
end
binfm.fields = field_list

local E = {
    truncated = ProtoExpert.new("binfm.truncated", "Truncated BINFM message",
        expert.group.MALFORMED, expert.severity.ERROR),
    malformed = ProtoExpert.new("binfm.malformed", "Malformed BINFM message",
        expert.group.MALFORMED, expert.severity.ERROR),
    trailing = ProtoExpert.new("binfm.trailing", "Trailing bytes after the BINFM message",
        expert.group.MALFORMED, expert.severity.ERROR),
    bad_value = ProtoExpert.new("binfm.bad_value", "Invalid field value",
        expert.group.MALFORMED, expert.severity.WARN),
    not_accepted = ProtoExpert.new("binfm.ack.not_accepted", "Tx not accepted",
        expert.group.RESPONSE_CODE, expert.severity.NOTE),
    dhcp_bad = ProtoExpert.new("binfm.dhcp.bad_option", "Bad BINFM DHCP site option",
        expert.group.MALFORMED, expert.severity.WARN),
}
binfm.experts = { E.truncated, E.malformed, E.trailing, E.bad_value, E.not_accepted, E.dhcp_bad }

-- Helpers --------------------------------------------------------------------------------

-- First 4 bytes of a hash as hex, for the Info column.
local function short_hex(range)
    local n = math.min(range:len(), 4)
    return string.lower(range:range(0, n):bytes():tohex()) .. "…"
end

-- A bounds-checked reader over `tvb` from `off`. take(n, what) returns a TvbRange of n > 0
-- bytes, or nil after adding an expert info (and then every later take returns nil).
local Cursor = {}
Cursor.__index = Cursor

local function new_cursor(tvb, off, tree)
    return setmetatable({ tvb = tvb, off = off, tree = tree, ok = true }, Cursor)
end

function Cursor:left()
    return self.tvb:len() - self.off
end

function Cursor:take(n, what, tree)
    if not self.ok then
        return nil
    end
    local have = self:left()
    if have < n then
        self.ok = false
        local msg = string.format("Truncated at %s: need %d bytes, %d left", what, n, have)
        local t = tree or self.tree
        if have > 0 then
            t:add_tvb_expert_info(E.truncated, self.tvb:range(self.off, have), msg)
        else
            t:add_proto_expert_info(E.truncated, msg)
        end
        return nil
    end
    local r = self.tvb:range(self.off, n)
    self.off = self.off + n
    return r
end

-- Flags an error that stops dissection (like the Rust parser's Err).
function Cursor:fail(expert_field, msg, tree)
    self.ok = false
    ;(tree or self.tree):add_proto_expert_info(expert_field, msg)
end

-- One ToALL Tx at the cursor, as a subtree of `tree`. Returns a short summary table
-- (seq, hash) or nil when it could not be read far enough.
local function dissect_tx(cur, tree, label)
    local tvb = cur.tvb
    local start = cur.off
    if cur:left() <= 0 then
        cur:take(1, "tx version", tree)
        return nil
    end
    local tt = tree:add(F.tx, tvb:range(start, cur:left()))
    tt:set_text(label)
    local info = {}

    local r = cur:take(1, "tx version", tt)
    if not r then return nil end
    local it = tt:add(F.tx_version, r)
    if r:uint() ~= TX_VERSION then
        it:add_proto_expert_info(E.bad_value,
            string.format("Unsupported Tx version %d (expected %d)", r:uint(), TX_VERSION))
    end

    r = cur:take(32, "tx hash address", tt)
    if not r then return nil end
    tt:add(F.tx_hash_addr, r)
    info.hash = short_hex(r)

    r = cur:take(8, "tx seq", tt)
    if not r then return nil end
    tt:add(F.tx_seq, r)
    info.seq = tostring(r:uint64())
    tt:append_text(string.format(", seq %s, hash %s", info.seq, info.hash))

    r = cur:take(4, "tx private ip", tt)
    if not r then return nil end
    tt:add(F.tx_private_ip, r)
    local priv_ip = tostring(r:ipv4())
    r = cur:take(2, "tx private port", tt)
    if not r then return nil end
    tt:add(F.tx_private_port, r)
    local priv = priv_ip .. ":" .. r:uint()

    r = cur:take(4, "tx nat ip", tt)
    if not r then return nil end
    tt:add(F.tx_nat_ip, r)
    local nat_ip = tostring(r:ipv4())
    r = cur:take(2, "tx nat port", tt)
    if not r then return nil end
    tt:add(F.tx_nat_port, r)
    local nat = nat_ip .. ":" .. r:uint()
    tt:append_text(string.format(", private %s, NAT %s", priv, nat))

    r = cur:take(8, "tx time", tt)
    if not r then return nil end
    tt:add(F.tx_time, r)

    r = cur:take(2, "tx dh group", tt)
    if not r then return nil end
    tt:add(F.tx_dh_group, r)

    r = cur:take(2, "tx y length", tt)
    if not r then return nil end
    local y_len = r:uint()
    it = tt:add(F.tx_y_len, r)
    if y_len > MAX_Y_LEN then
        cur:fail(E.malformed,
            string.format("Y length %d is above the bound %d", y_len, MAX_Y_LEN), it)
        tt:set_len(cur.off - start)
        return nil
    end
    if y_len > 0 then
        r = cur:take(y_len, "tx y", tt)
        if not r then return nil end
        tt:add(F.tx_y, r)
    end

    r = cur:take(32, "tx public key", tt)
    if not r then return nil end
    tt:add(F.tx_public_key, r)

    r = cur:take(64, "tx signature", tt)
    if not r then return nil end
    tt:add(F.tx_signature, r)

    tt:set_len(cur.off - start)
    return info
end

-- Message bodies: each returns the Info text (after the type name) --------------------------

local function body_tx(cur, tree)
    local info = dissect_tx(cur, tree, "ToALL Tx")
    if not info then return "" end
    return string.format(" seq=%s hash=%s", info.seq, info.hash)
end

local function body_ack(cur, tree)
    local r = cur:take(32, "ack tx id")
    if not r then return "" end
    tree:add(F.ack_tx_id, r)
    local id = short_hex(r)

    local rs = cur:take(1, "ack status")
    if not rs then return " id=" .. id end
    local st_item = tree:add(F.ack_status, rs)
    local status = rs:uint()
    local rr = cur:take(1, "ack reason")
    if not rr then return " id=" .. id end
    local reason_item = tree:add(F.ack_reason, rr)
    local reason = rr:uint()

    local text = " " .. (ACK_STATUS[status] or ("status " .. status))
    if ACK_STATUS[status] == nil then
        st_item:add_proto_expert_info(E.bad_value, "Unknown ack status " .. status)
    elseif status ~= 2 and reason ~= 0 then
        reason_item:add_proto_expert_info(E.bad_value,
            "Reason must be 0 unless the status is Rejected, got " .. reason)
    end
    if status == 2 then
        text = text .. string.format("(%s)", REJECT_REASONS[reason] or tostring(reason))
    end
    if status ~= 0 and ACK_STATUS[status] ~= nil then
        st_item:add_proto_expert_info(E.not_accepted,
            "Tx not accepted: " .. ACK_STATUS[status] ..
            (status == 2 and (" (" .. (REJECT_REASONS[reason] or tostring(reason)) .. ")") or ""))
    end

    r = cur:take(4, "ack observed ip")
    if not r then return text .. " id=" .. id end
    tree:add(F.ack_observed_ip, r)
    local ip = tostring(r:ipv4())
    r = cur:take(2, "ack observed port")
    if not r then return text .. " id=" .. id end
    tree:add(F.ack_observed_port, r)
    return string.format("%s observed=%s:%d id=%s", text, ip, r:uint(), id)
end

local function body_query(cur, tree)
    local r = cur:take(4, "query request id")
    if not r then return "" end
    tree:add(F.query_request_id, r)
    local id = r:uint()
    r = cur:take(32, "query hash address")
    if not r then return " id=" .. id end
    tree:add(F.query_hash_addr, r)
    local hash = short_hex(r)
    r = cur:take(1, "query flags")
    if not r then return string.format(" id=%d hash=%s", id, hash) end
    local ft = tree:add(F.query_flags, r)
    ft:add(F.query_want_unconfirmed, r)
    local flags = r:uint()
    if bit32.band(flags, 0xfe) ~= 0 then
        ft:add(F.query_reserved, r)
        ft:add_proto_expert_info(E.bad_value,
            string.format("Reserved query flag bits set: 0x%02x", flags))
    end
    local text = string.format(" id=%d hash=%s", id, hash)
    if bit32.band(flags, 0x01) ~= 0 then
        text = text .. " want_unconfirmed"
    end
    return text
end

local function body_reply(cur, tree)
    local r = cur:take(4, "reply request id")
    if not r then return "" end
    tree:add(F.reply_request_id, r)
    local id = r:uint()
    r = cur:take(32, "reply hash address")
    if not r then return " id=" .. id end
    tree:add(F.reply_hash_addr, r)
    local hash = short_hex(r)
    r = cur:take(1, "reply flags")
    if not r then return string.format(" id=%d hash=%s", id, hash) end
    local ft = tree:add(F.reply_flags, r)
    ft:add(F.reply_found, r)
    ft:add(F.reply_has_tx, r)
    ft:add(F.reply_has_unconfirmed, r)
    ft:add(F.reply_has_proof, r)
    local flags = r:uint()
    if bit32.band(flags, 0xf0) ~= 0 then
        ft:add(F.reply_reserved, r)
        ft:add_proto_expert_info(E.bad_value,
            string.format("Reserved reply flag bits set: 0x%02x", flags))
    end
    local text = string.format(" id=%d %s", id,
        bit32.band(flags, 0x01) ~= 0 and "found" or "not-found")
    r = cur:take(8, "reply height")
    if not r then return text end
    tree:add(F.reply_height, r)
    text = text .. " height=" .. tostring(r:uint64())
    r = cur:take(4, "reply confirmations")
    if not r then return text end
    tree:add(F.reply_confirmations, r)
    text = text .. " conf=" .. r:uint()
    if bit32.band(flags, 0x02) ~= 0 then
        local info = dissect_tx(cur, tree, "Confirmed ToALL Tx")
        if not info then return text end
        text = text .. " tx_seq=" .. info.seq
    end
    if bit32.band(flags, 0x04) ~= 0 then
        local info = dissect_tx(cur, tree, "Unconfirmed ToALL Tx")
        if not info then return text end
        text = text .. " unconfirmed_seq=" .. info.seq
    end
    if bit32.band(flags, 0x08) ~= 0 then
        r = cur:take(120, "proof header")
        if not r then return text end
        tree:add(F.proof_header, r)
        r = cur:take(2, "proof index")
        if not r then return text end
        tree:add(F.proof_index, r)
        r = cur:take(1, "proof depth")
        if not r then return text end
        local di = tree:add(F.proof_depth, r)
        local depth = r:uint()
        if depth > 8 then
            di:add_proto_expert_info(E.bad_value, "Proof depth above 8")
            return text
        end
        for _ = 1, depth do
            r = cur:take(32, "proof sibling")
            if not r then return text end
            tree:add(F.proof_sibling, r)
        end
        text = text .. " proof_depth=" .. depth
    end
    return text
end

local function body_list(cur, tree, size, max, field, what)
    local r = cur:take(1, what .. " count")
    if not r then return "" end
    local ci = tree:add(F.headers_count, r)
    local n = r:uint()
    if n > max then
        ci:add_proto_expert_info(E.bad_value, what .. " count above " .. max)
        return ""
    end
    for _ = 1, n do
        r = cur:take(size, what)
        if not r then return " count=" .. n end
        tree:add(field, r)
    end
    return " count=" .. n
end

local function body_headers(cur, tree)
    return body_list(cur, tree, 120, 8, F.headers_header, "header")
end

local function body_get_headers(cur, tree)
    return body_list(cur, tree, 32, 32, F.locator_hash, "locator hash")
end

local function body_block_part(cur, tree)
    local r = cur:take(32, "block part hash")
    if not r then return "" end
    tree:add(F.block_hash, r)
    local hash = short_hex(r)
    local rp = cur:take(2, "block part index")
    if not rp then return " hash=" .. hash end
    local part_item = tree:add(F.block_part, rp)
    local rn = cur:take(2, "block part count")
    if not rn then return " hash=" .. hash end
    local parts_item = tree:add(F.block_parts, rn)
    local part, parts = rp:uint(), rn:uint()
    if parts == 0 then
        parts_item:add_proto_expert_info(E.bad_value, "Block part count is 0")
    elseif part >= parts then
        part_item:add_proto_expert_info(E.bad_value,
            string.format("Part index %d is not below the count %d", part, parts))
    end
    local text = string.format(" hash=%s part=%d/%d", hash, part, parts)
    r = cur:take(2, "block part length")
    if not r then return text end
    local len = r:uint()
    local it = tree:add(F.block_len, r)
    text = text .. " len=" .. len
    if len > MAX_PART_DATA then
        cur:fail(E.malformed,
            string.format("Block part length %d is above the bound %d", len, MAX_PART_DATA), it)
        return text
    end
    if len > 0 then
        r = cur:take(len, "block part data")
        if not r then return text end
        tree:add(F.block_data, r)
    end
    return text
end

local function body_get_block(cur, tree)
    local r = cur:take(32, "get block hash")
    if not r then return "" end
    tree:add(F.block_hash, r)
    return " hash=" .. short_hex(r)
end

local function body_tip(cur, tree)
    local r = cur:take(32, "tip hash")
    if not r then return "" end
    tree:add(F.tip_hash, r)
    local hash = short_hex(r)
    r = cur:take(8, "tip height")
    if not r then return " hash=" .. hash end
    tree:add(F.tip_height, r)
    local text = string.format(" height=%s hash=%s", tostring(r:uint64()), hash)
    r = cur:take(32, "tip total work")
    if not r then return text end
    tree:add(F.tip_total_work, r)
    return text
end

-- A length-prefixed DH value (u16 length, then the bytes, at most MAX_Y_LEN). Returns false
-- when dissection must stop.
local function take_y(cur, tree, what, f_len, f_y)
    local r = cur:take(2, what .. " length")
    if not r then return false end
    local len = r:uint()
    local it = tree:add(f_len, r)
    if len > MAX_Y_LEN then
        cur:fail(E.malformed, string.format("%s length %d is above the bound %d", what, len, MAX_Y_LEN), it)
        return false
    end
    if len > 0 then
        r = cur:take(len, what)
        if not r then return false end
        tree:add(f_y, r)
    end
    return true
end

local function body_session(cur, tree, with_confirm)
    local what = with_confirm and "session response" or "session request"
    local r = cur:take(32, what .. " caller")
    if not r then return "" end
    tree:add(F.session_caller, r)
    local text = " caller=" .. short_hex(r)
    r = cur:take(32, what .. " callee")
    if not r then return text end
    tree:add(F.session_callee, r)
    text = text .. " callee=" .. short_hex(r)
    r = cur:take(16, what .. " nonce")
    if not r then return text end
    tree:add(F.session_nonce, r)
    r = cur:take(4, what .. " ssrc")
    if not r then return text end
    tree:add(F.session_ssrc, r)
    text = text .. string.format(" ssrc=0x%08x", r:uint())
    if not take_y(cur, tree, what .. " ephemeral", F.session_eph_len, F.session_eph) then return text end
    if not take_y(cur, tree, what .. " next ephemeral", F.session_next_len, F.session_next) then return text end
    if with_confirm then
        r = cur:take(16, what .. " confirm")
        if not r then return text end
        tree:add(F.session_confirm, r)
    else
        r = cur:take(32, what .. " public key")
        if not r then return text end
        tree:add(F.session_public_key, r)
        r = cur:take(64, what .. " signature")
        if not r then return text end
        tree:add(F.session_signature, r)
    end
    return text
end

local function body_session_request(cur, tree)
    return body_session(cur, tree, false)
end

local function body_session_response(cur, tree)
    return body_session(cur, tree, true)
end

local function body_key_renewal_reply(cur, tree)
    local r = cur:take(32, "key renewal reply sender")
    if not r then return "" end
    tree:add(F.rekey_reply_sender, r)
    local tail = " sender=" .. short_hex(r)
    r = cur:take(8, "key renewal reply counter")
    if not r then return tail end
    tree:add(F.rekey_reply_counter, r)
    local text = " counter=" .. tostring(r:uint64())
    if not take_y(cur, tree, "key renewal reply y", F.rekey_reply_y_len, F.rekey_reply_y) then
        return text .. tail
    end
    r = cur:take(16, "key renewal reply mac")
    if not r then return text .. tail end
    tree:add(F.rekey_reply_mac, r)
    return text .. tail
end

local function body_path(cur, tree)
    local r = cur:take(32, "path sender")
    if not r then return "" end
    tree:add(F.path_sender, r)
    local tail = " sender=" .. short_hex(r)
    r = cur:take(16, "path data")
    if not r then return tail end
    tree:add(F.path_data, r)
    local text = " data=" .. short_hex(r)
    r = cur:take(16, "path mac")
    if not r then return text .. tail end
    tree:add(F.path_mac, r)
    return text .. tail
end

local function body_handover(cur, tree)
    local r = cur:take(32, "handover sender")
    if not r then return "" end
    tree:add(F.handover_sender, r)
    local sender = short_hex(r)
    r = cur:take(8, "handover counter")
    if not r then return " sender=" .. sender end
    tree:add(F.handover_counter, r)
    local text = " counter=" .. tostring(r:uint64())
    local tail = " sender=" .. sender

    r = cur:take(4, "handover private ip")
    if not r then return text .. tail end
    tree:add(F.handover_private_ip, r)
    local ip = tostring(r:ipv4())
    r = cur:take(2, "handover private port")
    if not r then return text .. tail end
    tree:add(F.handover_private_port, r)
    text = text .. string.format(" private=%s:%d", ip, r:uint())

    r = cur:take(4, "handover nat ip")
    if not r then return text .. tail end
    tree:add(F.handover_nat_ip, r)
    ip = tostring(r:ipv4())
    r = cur:take(2, "handover nat port")
    if not r then return text .. tail end
    tree:add(F.handover_nat_port, r)
    text = text .. string.format(" nat=%s:%d", ip, r:uint())

    r = cur:take(16, "handover mac")
    if not r then return text .. tail end
    tree:add(F.handover_mac, r)
    return text .. tail
end

local function body_key_renewal(cur, tree)
    local r = cur:take(32, "key renewal sender")
    if not r then return "" end
    tree:add(F.rekey_sender, r)
    local tail = " sender=" .. short_hex(r)
    r = cur:take(8, "key renewal counter")
    if not r then return tail end
    tree:add(F.rekey_counter, r)
    local text = " counter=" .. tostring(r:uint64())
    r = cur:take(2, "key renewal y length")
    if not r then return text .. tail end
    local y_len = r:uint()
    local it = tree:add(F.rekey_y_len, r)
    text = text .. " y_len=" .. y_len
    if y_len > MAX_Y_LEN then
        cur:fail(E.malformed,
            string.format("Y' length %d is above the bound %d", y_len, MAX_Y_LEN), it)
        return text .. tail
    end
    if y_len > 0 then
        r = cur:take(y_len, "key renewal y")
        if not r then return text .. tail end
        tree:add(F.rekey_y, r)
    end
    r = cur:take(16, "key renewal mac")
    if not r then return text .. tail end
    tree:add(F.rekey_mac, r)
    return text .. tail
end

local function body_control_ack(cur, tree)
    local r = cur:take(32, "control ack sender")
    if not r then return "" end
    tree:add(F.ctrl_ack_sender, r)
    local tail = " sender=" .. short_hex(r)
    r = cur:take(8, "control ack counter")
    if not r then return tail end
    tree:add(F.ctrl_ack_counter, r)
    local text = " counter=" .. tostring(r:uint64())
    r = cur:take(16, "control ack mac")
    if not r then return text .. tail end
    tree:add(F.ctrl_ack_mac, r)
    return text .. tail
end

local BODIES = {
    [1] = body_tx,
    [2] = body_ack,
    [3] = body_query,
    [4] = body_reply,
    [5] = body_tx,
    [6] = body_block_part,
    [7] = body_get_block,
    [8] = body_tip,
    [9] = body_session_request,
    [10] = body_session_response,
    [11] = body_handover,
    [12] = body_key_renewal,
    [13] = body_control_ack,
    [14] = body_key_renewal_reply,
    [15] = body_path,
    [16] = body_path,
    [20] = body_headers,
    [21] = body_get_headers,
}

-- Media on the EN port -----------------------------------------------------------------------
-- SRTP (RFC 7714: RTP header[12] || AES-GCM ciphertext || tag[16]) shares the EN's port with
-- the control messages; Wireshark's own rtp dissector decodes the header (the payload is
-- ciphertext to it). Only what would make it throw is checked here first.

local RTP_HEADER_LEN = 12
local SRTP_TAG_LEN = 16

local rtp_dissector = nil
do
    local ok, d = pcall(Dissector.get, "rtp")
    if ok and d then
        rtp_dissector = d
    end
end

-- RFC 7983 demultiplexing by the first byte, as wire::rtp::is_rtp: RTP version 2 in the
-- top two bits (0x80..0xBF); every BINFM message starts with 'B' (0x42).
local function is_rtp(tvb)
    if tvb:len() < 1 then return false end
    local b = tvb:range(0, 1):uint()
    return b >= 0x80 and b <= 0xbf
end

local function dissect_media(tvb, pinfo, tree)
    local len = tvb:len()
    local problems = {}
    if len < RTP_HEADER_LEN then
        problems[#problems + 1] = { E.truncated, string.format(
            "Truncated RTP header: need %d bytes, %d left", RTP_HEADER_LEN, len) }
    elseif not rtp_dissector then
        problems[#problems + 1] = { E.malformed, "This Wireshark has no rtp dissector" }
    else
        -- Dissector:call turns an exception of the called dissector (a CSRC list or a header
        -- extension running past the end, say) into a Lua error: catch it, flag the packet.
        local ok, err = pcall(function() rtp_dissector:call(tvb, pinfo, tree) end)
        if not ok then
            local why = tostring(err):match("Dissector_call: (.*)$") or tostring(err)
            problems[#problems + 1] = { E.malformed, "The rtp dissector failed: " .. why }
        elseif len < RTP_HEADER_LEN + SRTP_TAG_LEN then
            problems[#problems + 1] = { E.truncated, string.format(
                "SRTP packet of %d bytes: shorter than the %d-byte header and the %d-byte tag",
                len, RTP_HEADER_LEN, SRTP_TAG_LEN) }
        end
    end
    -- wire::rtp refuses what our senders never use: padding, extensions, CSRCs.
    local b0 = tvb:range(0, 1):uint()
    if bit32.band(b0, 0x3f) ~= 0 then
        problems[#problems + 1] = { E.bad_value, string.format(
            "RTP first byte 0x%02x: padding, extension or CSRCs, which an end node refuses", b0) }
    end
    if #problems > 0 then
        local root = tree:add(binfm, tvb:range(0, len))
        root:set_text("BINFM end node port: RTP/SRTP media")
        for _, p in ipairs(problems) do
            root:add_proto_expert_info(p[1], p[2])
        end
        if len < RTP_HEADER_LEN or not rtp_dissector then
            pinfo.cols.protocol = "RTP"
            pinfo.cols.info = "RTP [truncated]"
        end
    end
    return len
end

-- The dissector ---------------------------------------------------------------------------

function binfm.dissector(tvb, pinfo, tree)
    if is_rtp(tvb) then
        return dissect_media(tvb, pinfo, tree)
    end
    local len = tvb:len()
    pinfo.cols.protocol = "BINFM"
    local root = tree:add(binfm, tvb:range(0, len > 0 and len or nil))
    local cur = new_cursor(tvb, 0, root)

    local r = cur:take(2, "magic")
    if not r then
        pinfo.cols.info = "BINFM [truncated]"
        return len
    end
    root:add(F.magic, r)
    if r:string() ~= "BF" then
        cur:fail(E.malformed, string.format("Bad magic %s, expected \"BF\"",
            string.lower(r:bytes():tohex())))
        pinfo.cols.info = "BINFM [bad magic]"
        return len
    end
    r = cur:take(1, "version")
    if not r then
        pinfo.cols.info = "BINFM [truncated]"
        return len
    end
    local vi = root:add(F.version, r)
    if r:uint() ~= VERSION then
        vi:add_proto_expert_info(E.malformed,
            string.format("Unsupported BINFM version %d (expected %d)", r:uint(), VERSION))
        pinfo.cols.info = "BINFM [version " .. r:uint() .. "]"
        return len
    end
    r = cur:take(1, "message type")
    if not r then
        pinfo.cols.info = "BINFM [truncated]"
        return len
    end
    local ti = root:add(F.type, r)
    local kind = r:uint()
    local name = MSG_TYPES[kind]
    if not name then
        ti:add_proto_expert_info(E.malformed, "Unknown message type " .. kind)
        pinfo.cols.info = "BINFM [unknown type " .. kind .. "]"
        return len
    end
    root:append_text(", " .. name)

    local text = BODIES[kind](cur, root)
    if cur.ok and cur:left() > 0 then
        root:add_tvb_expert_info(E.trailing, tvb:range(cur.off, cur:left()),
            string.format("%d trailing bytes after the message", cur:left()))
        text = text .. " [trailing bytes]"
    elseif not cur.ok then
        text = text .. " [malformed]"
    end
    pinfo.cols.info = name .. text
    return len
end

-- Heuristic for BINFM on other ports: "BF", version 1, known type. Behind a NAT an EN's
-- port is the NAT's (e.g. 198.51.100.1:51161 <-> 198.51.100.2:23446 on the public
-- segment), and the call's media uses that same mapping: the UDP conversation (this ip:port
-- pair, both directions) becomes ours, so its later datagrams, RTP included, come to
-- binfm.dissector. A capture that starts mid-call, with no control message on the pair,
-- needs `-d udp.port==<port>,rtp` (or `--enable-heuristic rtp_udp`) for its media.
local function heuristic(tvb, pinfo, tree)
    if tvb:len() < 4 then return false end
    if tvb:range(0, 2):string() ~= "BF" then return false end
    if tvb:range(2, 1):uint() ~= VERSION then return false end
    if MSG_TYPES[tvb:range(3, 1):uint()] == nil then return false end
    pinfo.conversation = binfm
    binfm.dissector(tvb, pinfo, tree)
    return true
end

local udp_port = DissectorTable.get("udp.port")
udp_port:add(PORT_SN, binfm)
udp_port:add(PORT_EN, binfm)
binfm:register_heuristic("udp", heuristic)

-- DHCP site options 224 and 225 ----------------------------------------------------------
-- A postdissector: for every frame with a DHCP message, walk its options (after the magic
-- cookie at offset 236) and decode ours. Fields are binfm.dhcp.*.

local binfm_dhcp = Proto("binfm_dhcp", "BINFM DHCP options")
local dhcp_field = Field.new("dhcp")

local OPT_NAT_PUBLIC = 224
local OPT_SUPER_NODES = 225
local DHCP_COOKIE_OFF = 236
local DHCP_OPTIONS_OFF = 240

local function dissect_dhcp_options(dt, tree)
    local n = dt:len()
    if n < DHCP_OPTIONS_OFF then return end
    if dt:range(DHCP_COOKIE_OFF, 4):uint() ~= 0x63825363 then return end
    local st = nil
    local function subtree()
        if not st then
            st = tree:add(binfm_dhcp, dt:range(DHCP_OPTIONS_OFF, n - DHCP_OPTIONS_OFF))
        end
        return st
    end
    local off = DHCP_OPTIONS_OFF
    while off < n do
        local code = dt:range(off, 1):uint()
        if code == 255 then break end
        if code == 0 then
            off = off + 1
        else
            if off + 2 > n then break end
            local olen = dt:range(off + 1, 1):uint()
            if off + 2 + olen > n then
                if code == OPT_NAT_PUBLIC or code == OPT_SUPER_NODES then
                    subtree():add_tvb_expert_info(E.dhcp_bad, dt:range(off, n - off),
                        string.format("Option %d is truncated: length %d, %d bytes left",
                            code, olen, n - off - 2))
                end
                break
            end
            if code == OPT_NAT_PUBLIC then
                local t = subtree()
                if olen == 4 then
                    local it = t:add(F.dhcp_nat_public, dt:range(off + 2, 4))
                    local ip = dt:range(off + 2, 4):uint()
                    if ip == 0 or ip == 0xffffffff then
                        it:add_proto_expert_info(E.dhcp_bad, "Option 224: invalid address")
                    end
                else
                    t:add_tvb_expert_info(E.dhcp_bad, dt:range(off, 2 + olen),
                        string.format("Option 224 must be 4 bytes, is %d", olen))
                end
            elseif code == OPT_SUPER_NODES then
                local t = subtree()
                if olen == 0 or olen % 6 ~= 0 then
                    t:add_tvb_expert_info(E.dhcp_bad, dt:range(off, 2 + olen),
                        string.format("Option 225 must be 6n bytes (n >= 1), is %d", olen))
                else
                    for i = 0, olen / 6 - 1 do
                        local e = dt:range(off + 2 + 6 * i, 6)
                        local ip = tostring(e:range(0, 4):ipv4())
                        local port = e:range(4, 2):uint()
                        local it = t:add(F.dhcp_super_node, e, ip .. ":" .. port)
                        it:add(F.dhcp_super_node_ip, e:range(0, 4))
                        it:add(F.dhcp_super_node_port, e:range(4, 2))
                        local ipn = e:range(0, 4):uint()
                        if ipn == 0 or ipn == 0xffffffff or port == 0 then
                            it:add_proto_expert_info(E.dhcp_bad,
                                "Option 225: invalid entry " .. ip .. ":" .. port)
                        end
                    end
                end
            end
            off = off + 2 + olen
        end
    end
end

function binfm_dhcp.dissector(tvb, pinfo, tree)
    for _, fi in ipairs({ dhcp_field() }) do
        local r = fi.range
        if r and r:len() > 0 then
            dissect_dhcp_options(r:tvb(), tree)
        end
    end
end

register_postdissector(binfm_dhcp)
