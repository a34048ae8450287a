-- bench.lua: what push-events.lua itself costs per transaction, without
-- Dovecot (make bench runs it).
--
--   lua5.4 bench.lua SCRIPT EVENTS_FILE [TRANSACTIONS]
--
-- Runs TRANSACTIONS (default 20000) transactions through the script's entry
-- points as Dovecot's Lua driver calls them, with fake user objects: one
-- UID STORE on one message (an empty FlagsClear and a FlagsSet with a flag
-- and a keyword), and one LMTP delivery (MessageNew with headers and a
-- 200-byte snippet). Every transaction appends to EVENTS_FILE, as in
-- Dovecot, and the file is removed at the end. Prints the CPU time
-- (os.clock: user and system time of this process) per transaction.

local script, path, count = arg[1], arg[2], tonumber(arg[3] or "20000")

dovecot = { -- luacheck: ignore 111
	i_error = function(msg)
		io.stderr:write(msg, "\n")
	end,
	storage = { STATUS_UIDVALIDITY = 4 },
}

local settings = {
	push_events_path = path,
	push_events_userdb_fields = "kafka_push,customer_id,plan",
	kafka_push = "on",
	customer_id = "1001",
	plan = "gold",
}
local user = { username = "user-a@example.test" }
function user.plugin_getenv(_, name)
	return settings[name]
end

dofile(script)

local function store_txn(i)
	local ctx = dovecot_lua_notify_begin_txn(user)
	dovecot_lua_notify_event_flags_clear(ctx, {
		name = "FlagsClear", mailbox = "INBOX", uid = i + 0.0, uid_validity = 1796397223.0,
		flags = {}, flags_old = {}, keywords = {}, keywords_old = {},
	})
	dovecot_lua_notify_event_flags_set(ctx, {
		name = "FlagsSet", mailbox = "INBOX", uid = i + 0.0, uid_validity = 1796397223.0,
		flags = { "\\Flagged" }, keywords = { "$label1" },
	})
	dovecot_lua_notify_end_txn(ctx, true)
end

local snippet = string.rep("Hallo zusammen, anbei der Quartalsbericht für Q1. ", 4)
local function delivery_txn(i)
	local ctx = dovecot_lua_notify_begin_txn(user)
	dovecot_lua_notify_event_message_new(ctx, {
		name = "MessageNew", mailbox = "INBOX", uid = i + 0.0, uid_validity = 1796397223.0,
		date = 1709610300.0, tz = 330.0,
		from = "=?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.test>",
		to = "user-a@example.test", subject = "Grüße aus Köln ✓ – Quartalsbericht",
		snippet = snippet, message_id = "<seed-a-0001@example.test>",
		flags = {}, keywords = {},
	})
	dovecot_lua_notify_end_txn(ctx, true)
end

for _, case in ipairs({ { "imap_store", store_txn }, { "lmtp_delivery", delivery_txn } }) do
	local name, fn = case[1], case[2]
	local t0 = os.clock()
	for i = 1, count do
		fn(i)
	end
	local us = (os.clock() - t0) / count * 1e6
	print(string.format("lua_%s_us_per_txn=%.1f", name, us))
end
os.remove(path)
