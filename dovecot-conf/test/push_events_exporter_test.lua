-- push_events_exporter_test.lua: tests for the exporter output of
-- push-events.lua (push_events_output = exporter) without Dovecot.
--
--   lua5.4 push_events_exporter_test.lua SCRIPT
--
-- SCRIPT is the path of push-events.lua. The fake users have
-- push_events_output = exporter among their plugin settings unless a check
-- sets it otherwise. The test installs a fake
-- "dovecot" global whose dovecot.event() records the events the script
-- builds and sends (set_name, add_str, add_int, log_debug), fake mail user
-- and mailbox objects, loads the script and calls its entry points as the
-- push_notification_lua driver of Dovecot 2.3 does (numbers as floats,
-- missing headers as "" or nil). It prints one line per check and a final
-- "N passed, M failed"; the exit status is non-zero when a check failed.

local STATUS_UIDVALIDITY = 4 -- any constant: the fake only checks it is passed

-- Fake Dovecot ----------------------------------------------------------

local logged = {}
local sent = {} -- events sent with log_debug, in order
local created = 0 -- events created with dovecot.event()
local fail_add = nil -- when set, add_str raises for this field name

local function new_event()
	created = created + 1
	local ev = { fields = {}, order = {}, types = {} }
	function ev.set_name(self, name)
		assert(self == ev, "set_name called without the event")
		ev.name = name
		return ev
	end
	local function add(self, key, value, kind)
		assert(self == ev, "add_" .. kind .. " called without the event")
		assert(type(key) == "string", "field name is not a string")
		if ev.fields[key] == nil then
			ev.order[#ev.order + 1] = key
		end
		ev.fields[key] = value
		ev.types[key] = kind
		return ev
	end
	function ev.add_str(self, key, value)
		if key == fail_add then
			error("add_str failed")
		end
		-- luaL_checkstring accepts numbers, Dovecot keeps a C string
		assert(type(value) == "string", key .. " is not a string")
		return add(self, key, value, "str")
	end
	function ev.add_int(self, key, value)
		assert(math.type(value) == "integer", key .. " is not an integer")
		return add(self, key, value, "int")
	end
	function ev.log_debug(self, msg)
		assert(self == ev, "log_debug called without the event")
		assert(type(msg) == "string", "log message is not a string")
		sent[#sent + 1] = ev
		return ev
	end
	return ev
end

local function install_fake_dovecot()
	dovecot = {
		i_error = function(msg)
			logged[#logged + 1] = msg
		end,
		event = function(parent)
			assert(parent == nil, "the script passes no parent event")
			return new_event()
		end,
		storage = { STATUS_UIDVALIDITY = STATUS_UIDVALIDITY },
	}
end

-- fake_user returns a mail user like the one the Lua driver passes to
-- begin_txn. settings are its plugin settings (userdb fields included, as
-- Dovecot 2.3 makes them visible); mailboxes maps a name to the status
-- table (or an error string) its status() call gives. push_events_output
-- is "exporter" unless settings has it.
local function fake_user(username, settings, mailboxes)
	local user = { username = username, freed = {} }
	function user.plugin_getenv(self, name)
		assert(self == user, "plugin_getenv called without the user")
		if name == "push_events_output" and settings[name] == nil then
			return "exporter"
		end
		return settings[name]
	end
	function user.mailbox(self, name)
		assert(self == user, "mailbox called without the user")
		local box = {}
		function box.status(b, item)
			assert(b == box, "status called without the mailbox")
			assert(item == STATUS_UIDVALIDITY, "status item")
			local st = (mailboxes or {})[name]
			if type(st) ~= "table" then
				error("mailbox_get_status(" .. name .. ") failed: " ..
					tostring(st))
			end
			return st
		end
		function box.free(b)
			assert(b == box, "free called without the mailbox")
			user.freed[#user.freed + 1] = name
		end
		return box
	end
	return user
end

-- Test harness ------------------------------------------------------------

local script_path = arg[1] or "push-events.lua"
local passed, failed = 0, 0

local function check(name, fn)
	logged, sent, created, fail_add = {}, {}, 0, nil
	local ok, err = pcall(fn)
	if ok then
		passed = passed + 1
		print("ok   " .. name)
	else
		failed = failed + 1
		print("FAIL " .. name .. ": " .. tostring(err))
	end
end

local function expect_eq(got, want, what)
	if got ~= want then
		error(string.format("%s: got %q, want %q", what or "value",
			tostring(got), tostring(want)), 2)
	end
end

local function expect(cond, what)
	if not cond then
		error(what, 2)
	end
end

install_fake_dovecot()
dofile(script_path)

local USER_A_SETTINGS = {
	push_events_userdb_fields = "kafka_push,customer_id,plan",
	kafka_push = "on",
	customer_id = "1001",
	plan = "gold",
}

-- message builds a MessageNew/MessageAppend event table as Dovecot 2.3
-- hands it over: numbers are floats, from/to "" when missing.
local function message(fields)
	local ev = {
		name = "MessageNew", mailbox = "INBOX", uid = 1.0,
		uid_validity = 1700000000.0, date = 1709610300.0, tz = 330.0,
		from = "a@example.test", to = "b@example.test", subject = "hi",
		snippet = "text", message_id = "<1@example.test>",
		flags = {}, keywords = {},
	}
	for k, v in pairs(fields or {}) do
		ev[k] = v
	end
	return ev
end

-- without returns ev with the named fields removed (nil cannot be passed
-- through message()).
local function without(ev, ...)
	for _, k in ipairs({ ... }) do
		ev[k] = nil
	end
	return ev
end

-- run sends one transaction: calls is a list of {handler suffix, event}.
local function run(user, calls, success)
	local ctx = dovecot_lua_notify_begin_txn(user)
	for _, call in ipairs(calls) do
		_G["dovecot_lua_notify_event_" .. call[1]](ctx, call[2])
	end
	if success == nil then
		success = true
	end
	dovecot_lua_notify_end_txn(ctx, success)
end

-- string_bytes adds up the lengths of the string fields push_bytes covers.
local function string_bytes(ev)
	local n = 0
	for _, k in ipairs(ev.order) do
		if ev.types[k] == "str" then
			n = n + #ev.fields[k]
		end
	end
	return n
end

local function expect_fields(ev, want)
	for k, v in pairs(want) do
		expect_eq(ev.fields[k], v, k)
	end
	for _, k in ipairs(ev.order) do
		expect(want[k] ~= nil or k == "push_time" or k == "push_bytes",
			"unexpected field " .. k)
	end
	expect_eq(ev.types.push_bytes, "int", "push_bytes type")
	expect_eq(ev.fields.push_bytes, string_bytes(ev), "push_bytes")
	expect_eq(ev.order[#ev.order], "push_bytes", "last field")
	expect_eq(math.type(ev.fields.push_time), "integer", "push_time")
end

-- Checks --------------------------------------------------------------------

check("all twelve handlers and begin/end_txn are defined", function()
	local names = {
		"begin_txn", "end_txn", "event_flags_set", "event_flags_clear",
		"event_mailbox_create", "event_mailbox_delete",
		"event_mailbox_rename", "event_mailbox_subscribe",
		"event_mailbox_unsubscribe", "event_message_append",
		"event_message_expunge", "event_message_new", "event_message_read",
		"event_message_trash",
	}
	for _, n in ipairs(names) do
		expect(type(_G["dovecot_lua_notify_" .. n]) == "function",
			"missing dovecot_lua_notify_" .. n)
	end
	expect_eq(script_init(), 0, "script_init() return value")
end)

check("MessageNew: every field, integers as integers, userdb fields",
	function()
		run(fake_user("user-a@example.test", USER_A_SETTINGS),
			{ { "message_new", message({ subject = "Grüße" }) } })
		expect_eq(#sent, 1, "events sent")
		local ev = sent[1]
		expect_eq(ev.name, "dovecot_kafka_event", "event name")
		expect_fields(ev, {
			push_v = 1, push_user = "user-a@example.test",
			push_event = "MessageNew", push_mailbox = "INBOX",
			push_uidvalidity = 1700000000, push_uid = 1,
			push_date = 1709610300, push_tz = 330,
			push_from = "a@example.test", push_to = "b@example.test",
			push_subject = "Grüße", push_snippet = "text",
			userdb_kafka_push = "on", userdb_customer_id = "1001",
			userdb_plan = "gold",
		})
		for _, k in ipairs({ "push_uid", "push_uidvalidity", "push_date",
			"push_tz", "push_v" }) do
			expect_eq(ev.types[k], "int", k .. " type")
		end
		expect_eq(#logged, 0, "errors logged")
	end)

check("MessageNew: no subject, empty body, missing headers", function()
	run(fake_user("u@example.test", {}), { { "message_new",
		without(message({ from = "", to = "", date = 0.0, tz = 0.0 }),
			"subject", "snippet", "message_id") } })
	expect_fields(sent[1], {
		push_v = 1, push_user = "u@example.test", push_event = "MessageNew",
		push_mailbox = "INBOX", push_uidvalidity = 1700000000, push_uid = 1,
		push_date = 0, push_tz = 0, push_from = "", push_to = "",
		push_snippet = "",
	})
end)

check("MessageAppend with flags and keywords: space-separated", function()
	run(fake_user("u@example.test", {}), { { "message_append",
		message({ name = "MessageAppend", flags = { "\\Seen", "\\Flagged" },
			keywords = { "$label1" } }) } })
	expect_eq(sent[1].fields.push_event, "MessageAppend", "event")
	expect_eq(sent[1].fields.push_flags, "\\Seen \\Flagged", "flags")
	expect_eq(sent[1].fields.push_keywords, "$label1", "keywords")
end)

check("FlagsSet and FlagsClear: lists always present, \"\" when empty",
	function()
		local ev = { mailbox = "INBOX", uid = 2.0, uid_validity = 9.0,
			flags = { "\\Flagged", "\\Draft" }, keywords = {} }
		run(fake_user("u@example.test", {}), {
			{ "flags_clear", { mailbox = "INBOX", uid = 2.0, uid_validity = 9.0 } },
			{ "flags_set", ev },
		})
		expect_eq(#sent, 2, "events sent")
		expect_fields(sent[1], { push_v = 1, push_user = "u@example.test",
			push_event = "FlagsClear", push_mailbox = "INBOX",
			push_uidvalidity = 9, push_uid = 2, push_flags = "",
			push_keywords = "" })
		expect_eq(sent[2].fields.push_flags, "\\Flagged \\Draft", "flags")
		expect_eq(sent[2].fields.push_keywords, "", "keywords")
	end)

check("mailbox events", function()
	local user = fake_user("u@example.test", {},
		{ Work = { uidvalidity = 1733330001.0 } })
	run(user, {
		{ "mailbox_create", { mailbox = "Work" } },
		{ "mailbox_rename", { mailbox = "Work2", mailbox_old = "Work" } },
		{ "mailbox_subscribe", { mailbox = "Work2" } },
		{ "mailbox_unsubscribe", { mailbox = "Work2" } },
		{ "mailbox_delete", { mailbox = "Work2" } },
	})
	expect_eq(#sent, 5, "events sent")
	expect_fields(sent[1], { push_v = 1, push_user = "u@example.test",
		push_event = "MailboxCreate", push_mailbox = "Work",
		push_uidvalidity = 1733330001 })
	expect_eq(user.freed[1], "Work", "mailbox freed")
	expect_fields(sent[2], { push_v = 1, push_user = "u@example.test",
		push_event = "MailboxRename", push_mailbox = "Work2",
		push_mailbox_old = "Work" })
	for i, name in ipairs({ "MailboxSubscribe", "MailboxUnsubscribe",
		"MailboxDelete" }) do
		expect_fields(sent[i + 2], { push_v = 1, push_user = "u@example.test",
			push_event = name, push_mailbox = "Work2" })
	end
end)

check("MailboxCreate: unreadable uidvalidity gives 0 and an error",
	function()
		run(fake_user("u@example.test", {}, { New = "no such mailbox" }),
			{ { "mailbox_create", { mailbox = "New" } } })
		expect_eq(sent[1].fields.push_uidvalidity, 0, "uidvalidity")
		expect_eq(#logged, 1, "errors logged")
		expect(logged[1]:find("^push%-events%-exporter: MailboxCreate"),
			logged[1])
	end)

check("message events with only ids", function()
	local ev = { mailbox = "INBOX", uid = 3.0, uid_validity = 9.0 }
	run(fake_user("u@example.test", {}), {
		{ "message_read", ev }, { "message_trash", ev },
		{ "message_expunge", ev },
	})
	for i, name in ipairs({ "MessageRead", "MessageTrash", "MessageExpunge" }) do
		expect_fields(sent[i], { push_v = 1, push_user = "u@example.test",
			push_event = name, push_mailbox = "INBOX",
			push_uidvalidity = 9, push_uid = 3 })
	end
end)

local REPLACEMENT = "\239\191\189"
check("invalid UTF-8 and NUL become U+FFFD; push_bytes counts the result",
	function()
		run(fake_user("u@example.test", {}), { { "message_new",
			message({ subject = "a\255b\0c", from = "ok\226\130" }) } })
		local ev = sent[1]
		expect_eq(ev.fields.push_subject, "a" .. REPLACEMENT .. "b" ..
			REPLACEMENT .. "c", "subject")
		expect_eq(ev.fields.push_from, "ok" .. REPLACEMENT:rep(2), "from")
		expect_eq(ev.fields.push_bytes, string_bytes(ev), "push_bytes")
	end)

check("events are sent at end_txn, in order; a failed transaction sends none",
	function()
		local user = fake_user("u@example.test", {})
		local ctx = dovecot_lua_notify_begin_txn(user)
		dovecot_lua_notify_event_message_read(ctx,
			{ mailbox = "INBOX", uid = 1.0, uid_validity = 1.0 })
		dovecot_lua_notify_event_message_trash(ctx,
			{ mailbox = "INBOX", uid = 1.0, uid_validity = 1.0 })
		expect_eq(#sent, 0, "sent before end_txn")
		dovecot_lua_notify_end_txn(ctx, true)
		expect_eq(#sent, 2, "sent")
		expect_eq(sent[1].fields.push_event, "MessageRead", "first")
		expect_eq(sent[2].fields.push_event, "MessageTrash", "second")

		sent, created = {}, 0
		run(user, { { "message_read",
			{ mailbox = "INBOX", uid = 1.0, uid_validity = 1.0 } } }, false)
		expect_eq(#sent, 0, "sent for a failed transaction")
		expect_eq(created, 0, "events created for a failed transaction")
	end)

check("two overlapping transactions stay separate", function()
	local a = fake_user("user-a@example.test", USER_A_SETTINGS)
	local c = fake_user("user-c@example.test", {})
	local t1 = dovecot_lua_notify_begin_txn(a)
	local t2 = dovecot_lua_notify_begin_txn(c)
	dovecot_lua_notify_event_message_append(t1,
		message({ name = "MessageAppend", mailbox = "Target" }))
	dovecot_lua_notify_event_message_expunge(t2,
		{ mailbox = "INBOX", uid = 4.0, uid_validity = 9.0 })
	dovecot_lua_notify_end_txn(t2, true)
	dovecot_lua_notify_end_txn(t1, true)
	expect_eq(#sent, 2, "sent")
	expect_eq(sent[1].fields.push_user, "user-c@example.test", "first user")
	expect(sent[1].fields.userdb_plan == nil, "userdb leaked into user-c")
	expect_eq(sent[2].fields.userdb_plan, "gold", "userdb of user-a")
end)

check("a bad event is dropped and logged, the others are sent", function()
	run(fake_user("u@example.test", {}), {
		{ "message_read", { mailbox = "INBOX", uid = "x", uid_validity = 1.0 } },
		{ "flags_set", { mailbox = "INBOX", uid = 1.0, uid_validity = 1.0,
			flags = {}, keywords = { "two words" } } },
		{ "message_new", "not a table" },
		{ "message_trash", { mailbox = "INBOX", uid = 1.5, uid_validity = 1.0 } },
		{ "message_expunge", { mailbox = "INBOX", uid = 1.0, uid_validity = 1.0 } },
	})
	expect_eq(#sent, 1, "sent")
	expect_eq(sent[1].fields.push_event, "MessageExpunge", "survivor")
	expect_eq(#logged, 4, "errors logged")
	expect(logged[1]:find("MessageRead: event dropped: uid is string", 1, true),
		logged[1])
	expect(logged[2]:find("holds white space", 1, true), logged[2])
	expect(logged[4]:find("uid is not an integer", 1, true), logged[4])
end)

check("sending fails: logged with the count, nothing raised", function()
	fail_add = "push_user"
	run(fake_user("u@example.test", {}), {
		{ "message_read", { mailbox = "INBOX", uid = 1.0, uid_validity = 1.0 } },
		{ "message_trash", { mailbox = "INBOX", uid = 1.0, uid_validity = 1.0 } },
	})
	expect_eq(#sent, 0, "sent")
	expect_eq(#logged, 1, "errors logged")
	expect(logged[1]:find("(2 of 2 events lost)", 1, true), logged[1])
end)

check("push_events_output = file: no event sent, the file output's error",
	function()
		run(fake_user("u@example.test", { push_events_output = "file" }), {
			{ "message_read", { mailbox = "INBOX", uid = 1.0, uid_validity = 1.0 } },
		})
		expect_eq(created, 0, "events created")
		expect_eq(#logged, 1, "errors logged")
		expect(logged[1]:find("^push%-events: push_events_path is not set"),
			logged[1])
	end)

check("unknown push_events_output: events counted, dropped and logged",
	function()
		run(fake_user("u@example.test", { push_events_output = "kafka" }), {
			{ "message_read", { mailbox = "INBOX", uid = 1.0, uid_validity = 1.0 } },
			{ "message_trash", { mailbox = "INBOX", uid = 1.0, uid_validity = 1.0 } },
		})
		expect_eq(created, 0, "events created")
		expect_eq(#logged, 2, "errors logged")
		expect(logged[1]:find('push_events_output is "kafka"', 1, true),
			logged[1])
		expect(logged[2]:find("2 events dropped", 1, true), logged[2])
	end)

check("begin_txn with a bad user: events counted and dropped", function()
	run(42, { { "message_read",
		{ mailbox = "INBOX", uid = 1.0, uid_validity = 1.0 } } })
	expect_eq(#sent, 0, "sent")
	expect_eq(#logged, 2, "errors logged")
	expect(logged[1]:find("begin_txn: user is number", 1, true), logged[1])
	expect(logged[2]:find("1 events dropped", 1, true), logged[2])
end)

check("end_txn with a bad context: logged, nothing raised", function()
	dovecot_lua_notify_end_txn(nil, true)
	expect_eq(#logged, 1, "errors logged")
	expect(logged[1]:find("end_txn: context is nil", 1, true), logged[1])
end)

check("Dovecot 2.4 user (no plugin_getenv): userdb through var_expand",
	function()
		script_init({ push_events_output = "exporter",
			push_events_userdb_fields = "kafka_push,plan" })
		local user = { username = "u@example.test" }
		function user.var_expand(_, fmt)
			local values = { ["%{userdb:kafka_push}"] = "on" }
			return values[fmt] or ""
		end
		run(user, { { "message_read",
			{ mailbox = "INBOX", uid = 1.0, uid_validity = 1.0 } } })
		expect_eq(sent[1].fields.userdb_kafka_push, "on", "kafka_push")
		expect(sent[1].fields.userdb_plan == nil, "empty plan sent")
		expect_eq(#logged, 0, "errors logged")
		dovecot_lua_notify_end_txn(nil, true)
		expect(logged[1]:find("^push%-events%-exporter: end_txn"), logged[1])
	end)

print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
