-- push_events_test.lua: tests for push-events.lua without Dovecot.
--
--   lua5.4 push_events_test.lua SCRIPT
--
-- SCRIPT is the path of push-events.lua. The test installs a fake "dovecot"
-- global and fake mail user and mailbox objects, loads the script and calls
-- its entry points as the push_notification_lua driver of Dovecot 2.3 does
-- (numbers as floats, missing headers as "" or nil). It prints one line per
-- check and a final "N passed, M failed"; the exit status is non-zero when a
-- check failed.
--
-- The concurrency check runs this file again in writer mode:
--
--   lua5.4 push_events_test.lua --writer SCRIPT PATH ID LINES
--
-- which appends LINES lines of 5-20 KB to PATH through the script.

local STATUS_UIDVALIDITY = 4 -- any constant: the fake only checks it is passed

-- Fake Dovecot ----------------------------------------------------------

local logged = {}

local function install_fake_dovecot()
	dovecot = {
		i_error = function(msg)
			logged[#logged + 1] = msg
		end,
		storage = { STATUS_UIDVALIDITY = STATUS_UIDVALIDITY },
	}
end

-- fake_user returns a mail user like the one the Lua driver passes to
-- begin_txn. settings are its plugin settings (userdb fields included, as
-- Dovecot 2.3 makes them visible); mailboxes maps a name to the status
-- table (or an error string) its status() call gives.
local function fake_user(username, settings, mailboxes)
	local user = {
		username = username,
		freed = {},
		status_items = {},
	}
	function user.plugin_getenv(self, name)
		assert(self == user, "plugin_getenv called without the user")
		return settings[name]
	end
	function user.mailbox(self, name)
		assert(self == user, "mailbox called without the user")
		local box = { name = name }
		function box.status(b, item)
			assert(b == box, "status called without the mailbox")
			user.status_items[#user.status_items + 1] = item
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

local function read_file(path)
	local f = io.open(path, "rb")
	if f == nil then
		return ""
	end
	local s = f:read("a")
	f:close()
	return s
end

local function file_lines(path)
	local lines = {}
	for line in read_file(path):gmatch("([^\n]*)\n") do
		lines[#lines + 1] = line
	end
	return lines
end

-- A strict JSON decoder (RFC 8259) ----------------------------------------

local decode_value

local function skip_ws(s, pos)
	return s:find("[^ \t\r\n]", pos) or #s + 1
end

local function decode_string(s, pos)
	-- pos is at the opening quote
	local out = {}
	pos = pos + 1
	while true do
		local stop = s:find('["\\\0-\31]', pos)
		if stop == nil then
			error("unterminated string")
		end
		out[#out + 1] = s:sub(pos, stop - 1)
		local c = s:sub(stop, stop)
		if c == '"' then
			return table.concat(out), stop + 1
		elseif c == "\\" then
			local e = s:sub(stop + 1, stop + 1)
			local simple = {
				['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b",
				f = "\f", n = "\n", r = "\r", t = "\t",
			}
			if simple[e] then
				out[#out + 1] = simple[e]
				pos = stop + 2
			elseif e == "u" then
				local hex = s:sub(stop + 2, stop + 5)
				if not hex:find("^%x%x%x%x$") then
					error("bad \\u escape at " .. stop)
				end
				out[#out + 1] = utf8.char(tonumber(hex, 16))
				pos = stop + 6
			else
				error("bad escape at " .. stop)
			end
		else
			error("raw control character in string at " .. stop)
		end
	end
end

local function decode_number(s, pos)
	local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
	if num == nil or num:find("^-?0%d") or num:find("%.$")
		or num:find("%.[eE]") or num:find("[eE][-+]?$") then
		error("bad number at " .. pos)
	end
	local v = math.tointeger(tonumber(num)) or tonumber(num)
	if v == nil then
		error("bad number at " .. pos)
	end
	return { number = num, value = v }, pos + #num
end

-- Objects decode to { keys = {in order}, values = {key -> value} }, numbers
-- to { number = text, value = n }, so that tests can check order and type.
function decode_value(s, pos)
	pos = skip_ws(s, pos)
	local c = s:sub(pos, pos)
	if c == "{" then
		local obj = { keys = {}, values = {} }
		pos = skip_ws(s, pos + 1)
		if s:sub(pos, pos) == "}" then
			return obj, pos + 1
		end
		while true do
			if s:sub(pos, pos) ~= '"' then
				error("expected key at " .. pos)
			end
			local key
			key, pos = decode_string(s, pos)
			pos = skip_ws(s, pos)
			if s:sub(pos, pos) ~= ":" then
				error("expected ':' at " .. pos)
			end
			local v
			v, pos = decode_value(s, pos + 1)
			if obj.values[key] ~= nil then
				error("duplicate key " .. key)
			end
			obj.keys[#obj.keys + 1] = key
			obj.values[key] = v
			pos = skip_ws(s, pos)
			c = s:sub(pos, pos)
			if c == "}" then
				return obj, pos + 1
			elseif c ~= "," then
				error("expected ',' or '}' at " .. pos)
			end
			pos = skip_ws(s, pos + 1)
		end
	elseif c == "[" then
		local arr = { array = true }
		pos = skip_ws(s, pos + 1)
		if s:sub(pos, pos) == "]" then
			return arr, pos + 1
		end
		while true do
			local v
			v, pos = decode_value(s, pos)
			arr[#arr + 1] = v
			pos = skip_ws(s, pos)
			c = s:sub(pos, pos)
			if c == "]" then
				return arr, pos + 1
			elseif c ~= "," then
				error("expected ',' or ']' at " .. pos)
			end
			pos = pos + 1
		end
	elseif c == '"' then
		return decode_string(s, pos)
	elseif c:find("[-%d]") then
		return decode_number(s, pos)
	elseif s:sub(pos, pos + 3) == "true" then
		return true, pos + 4
	elseif s:sub(pos, pos + 4) == "false" then
		return false, pos + 5
	elseif s:sub(pos, pos + 3) == "null" then
		return "null", pos + 4
	end
	error("unexpected character at " .. pos)
end

-- decode_line parses one events-file line (without "\n"): valid UTF-8, one
-- JSON object, nothing after it.
local function decode_line(line)
	if not utf8.len(line) then
		error("line is not valid UTF-8")
	end
	local v, pos = decode_value(line, 1)
	if type(v) ~= "table" or v.keys == nil then
		error("line is not a JSON object")
	end
	if skip_ws(line, pos) <= #line then
		error("garbage after the object")
	end
	return v
end

-- Writer mode: one of the concurrent processes ---------------------------

if arg[1] == "--writer" then
	local script, path, id, count = arg[2], arg[3], arg[4], tonumber(arg[5])
	install_fake_dovecot()
	dofile(script)
	local user = fake_user("writer-" .. id .. "@example.test",
		{ push_events_path = path })
	math.randomseed(tonumber(id))
	local filler = "abcdefghij klmnopqrst üöä € ✓ \"quoted\" \\ \t "
	local seq = 0
	while seq < count do
		local ctx = dovecot_lua_notify_begin_txn(user)
		for _ = 1, math.min(math.random(1, 3), count - seq) do
			seq = seq + 1
			-- whole copies of filler, so no UTF-8 sequence is cut
			local body = filler:rep(math.random(5000, 20000) // #filler + 1)
			dovecot_lua_notify_event_message_new(ctx, {
				name = "MessageNew", mailbox = "INBOX",
				uid = seq + 0.0, uid_validity = 1.0 * id,
				date = 0.0, tz = 0.0, from = "", to = "",
				subject = "w" .. id .. "-" .. seq,
				snippet = body,
				flags = {}, keywords = {},
			})
		end
		dovecot_lua_notify_end_txn(ctx, true)
	end
	if #logged > 0 then
		io.stderr:write("writer " .. id .. ": " .. logged[1] .. "\n")
		os.exit(1)
	end
	os.exit(0)
end

-- Test harness ------------------------------------------------------------

local script_path = arg[1] or "push-events.lua"
local passed, failed = 0, 0

local function check(name, fn)
	logged = {}
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

local events_path = os.tmpname()

local function reset_file()
	os.remove(events_path)
end

local USER_A_SETTINGS = {
	push_events_path = events_path,
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
		from_address = "", from_display_name = "",
		to_address = "", to_display_name = "",
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

local function shell_quote(s)
	return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- run writes one transaction: calls is a list of {handler suffix, event}.
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

local function written()
	local out = {}
	for i, line in ipairs(file_lines(events_path)) do
		out[i] = { raw = line, obj = decode_line(line) }
	end
	return out
end

local function field(line, name)
	local v = line.obj.values[name]
	if type(v) == "table" and v.number then
		return v.value
	end
	return v
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

-- Escaping: what the subject is, and how it must appear in the line.
local REPLACEMENT = "\239\191\189"
local escape_cases = {
	{ "plain", "hello", '"hello"' },
	{ "quote", 'say "hi"', '"say \\"hi\\""' },
	{ "backslash", "C:\\temp", '"C:\\\\temp"' },
	{ "short escapes", "\b\f\n\r\t", '"\\b\\f\\n\\r\\t"' },
	{ "other controls", "\0\1\31", '"\\u0000\\u0001\\u001f"' },
	{ "DEL stays raw", "a\127b", '"a\127b"' },
	{ "slash and < stay raw", "</a>", '"</a>"' },
	{ "non-ASCII stays raw", "Grüße €", '"Grüße €"' },
	{ "U+2028/U+2029 stay raw", "a\u{2028}b\u{2029}",
		'"a\u{2028}b\u{2029}"' },
	{ "4-byte UTF-8 stays raw", "\u{1F600}", '"\u{1F600}"' },
	{ "lone 0xFF", "a\255b", '"a' .. REPLACEMENT .. 'b"' },
	{ "stray continuation", "\128", '"' .. REPLACEMENT .. '"' },
	{ "overlong '/'", "\192\175", '"' .. REPLACEMENT:rep(2) .. '"' },
	{ "surrogate U+D800", "\237\160\128", '"' .. REPLACEMENT:rep(3) .. '"' },
	{ "above U+10FFFF", "\244\144\128\128", '"' .. REPLACEMENT:rep(4) .. '"' },
	{ "truncated at end", "ok\226\130", '"ok' .. REPLACEMENT:rep(2) .. '"' },
	{ "truncated before ASCII", "\226\130A",
		'"' .. REPLACEMENT:rep(2) .. 'A"' },
	{ "invalid then valid", "\255€", '"' .. REPLACEMENT .. '€"' },
	{ "invalid byte then quote", '\255"', '"' .. REPLACEMENT .. '\\""' },
}
for _, case in ipairs(escape_cases) do
	check("escape: " .. case[1], function()
		reset_file()
		local user = fake_user("u@example.test", USER_A_SETTINGS)
		run(user, { { "message_new", message({ subject = case[2] }) } })
		local lines = written()
		expect_eq(#lines, 1, "lines")
		local want = '"subject":' .. case[3] .. ","
		expect(lines[1].raw:find(want, 1, true) ~= nil,
			"line lacks " .. want .. ": " .. lines[1].raw)
	end)
end

check("escape: user name, mailbox, from, to and keywords are escaped too",
	function()
		reset_file()
		local user = fake_user('u"\n@example.test', USER_A_SETTINGS)
		run(user, { { "message_new", message({
			mailbox = "Box\\\255", from = '"Bob" <b@x>', to = "\t",
			keywords = { "$a\"b" },
		}) } })
		local l = written()[1]
		expect_eq(field(l, "user"), 'u"\n@example.test', "user")
		expect_eq(field(l, "mailbox"), "Box\\" .. REPLACEMENT, "mailbox")
		expect_eq(field(l, "from"), '"Bob" <b@x>', "from")
		expect_eq(field(l, "to"), "\t", "to")
		expect_eq(field(l, "keywords")[1], '$a"b', "keyword")
	end)

check("floats from Dovecot are written as integers", function()
	reset_file()
	local user = fake_user("u@example.test", USER_A_SETTINGS)
	run(user, {
		{ "message_new", message({ uid = 7.0, uid_validity = 1733330000.0,
			date = 1709768730.0, tz = -300.0 }) },
		{ "message_read", { name = "MessageRead", mailbox = "INBOX",
			uid = 7.0, uid_validity = 1733330000.0 } },
	})
	local lines = written()
	expect_eq(#lines, 2, "lines")
	for _, l in ipairs(lines) do
		expect(not l.raw:find("%d%.%d"), "decimal point in " .. l.raw)
		for _, k in ipairs({ "v", "time", "uid", "uidvalidity" }) do
			local v = l.obj.values[k]
			expect(type(v) == "table" and v.number:find("^%-?%d+$"),
				k .. " is not an integer")
		end
	end
	expect(lines[1].raw:find('"uid":7,', 1, true), "uid")
	expect(lines[1].raw:find('"uidvalidity":1733330000,', 1, true),
		"uidvalidity")
	expect(lines[1].raw:find('"date":1709768730,"tz":-300,', 1, true),
		"date/tz")
	expect_eq(field(lines[1], "v"), 1, "v")
	local t = field(lines[1], "time")
	expect(math.abs(t - os.time()) <= 5, "time is not now")
end)

check("empty flag and keyword lists are [] in FlagsSet/FlagsClear", function()
	reset_file()
	local user = fake_user("u@example.test", USER_A_SETTINGS)
	run(user, {
		{ "flags_clear", { name = "FlagsClear", mailbox = "INBOX", uid = 1.0,
			uid_validity = 5.0, flags = {}, flags_old = {}, keywords = {},
			keywords_old = {} } },
		{ "flags_set", { name = "FlagsSet", mailbox = "INBOX", uid = 1.0,
			uid_validity = 5.0, flags = {} } }, -- keywords nil
		{ "flags_set", { name = "FlagsSet", mailbox = "INBOX", uid = 1.0,
			uid_validity = 5.0, flags = { "\\Flagged", "\\Draft" },
			keywords = { "$label1" } } },
	})
	local lines = written()
	expect_eq(#lines, 3, "lines")
	for i = 1, 2 do
		expect(lines[i].raw:find('"flags":[],"keywords":[]', 1, true),
			"no empty arrays in " .. lines[i].raw)
		expect(not lines[i].raw:find("{}", 1, true), "{} in line")
	end
	expect(lines[3].raw:find(
		'"flags":["\\\\Flagged","\\\\Draft"],"keywords":["$label1"]', 1, true),
		"flags/keywords in " .. lines[3].raw)
	expect_eq(field(lines[1], "event"), "FlagsClear", "event name")
end)

check("MessageNew/Append: empty flags left out, missing headers", function()
	reset_file()
	local user = fake_user("u@example.test", USER_A_SETTINGS)
	run(user, {
		{ "message_new", without(message({ date = 0.0, tz = 0.0, from = "",
			to = "", snippet = "" }), "subject", "message_id") },
		{ "message_append", message({ name = "MessageAppend",
			flags = { "\\Seen" }, keywords = { "$label1" } }) },
	})
	local lines = written()
	local new, append = lines[1], lines[2]
	expect_eq(field(new, "event"), "MessageNew", "event")
	expect(new.obj.values.flags == nil, "flags present")
	expect(new.obj.values.keywords == nil, "keywords present")
	expect(new.obj.values.subject == nil, "subject present")
	expect(new.obj.values.message_id == nil, "message_id present")
	expect(new.raw:find('"date":0,"tz":0,"from":"","to":"",', 1, true),
		"date/tz/from/to in " .. new.raw)
	expect_eq(field(new, "snippet"), "", "snippet")
	expect_eq(field(append, "event"), "MessageAppend", "event")
	expect_eq(field(append, "flags")[1], "\\Seen", "flags")
	expect_eq(field(append, "keywords")[1], "$label1", "keywords")
	expect_eq(field(append, "message_id"), "<1@example.test>", "message_id")
end)

check("userdb: configured order, only existing fields", function()
	reset_file()
	local settings = {
		push_events_path = events_path,
		push_events_userdb_fields = " plan, kafka_push  customer_id,plan,,",
		kafka_push = "off", plan = "gold",
	}
	run(fake_user("b@example.test", settings), {
		{ "mailbox_delete", { name = "MailboxDelete", mailbox = "X" } },
	})
	run(fake_user("c@example.test", {
		push_events_path = events_path,
		push_events_userdb_fields = "kafka_push,customer_id,plan",
	}), { { "mailbox_delete", { name = "MailboxDelete", mailbox = "X" } } })
	local lines = written()
	expect(lines[1].raw:find('"userdb":{"plan":"gold","kafka_push":"off"}',
		1, true), "userdb in " .. lines[1].raw)
	expect(lines[2].obj.values.userdb == nil, "userdb for a user without")
end)

check("MailboxCreate reads the real uidvalidity and frees the mailbox",
	function()
		reset_file()
		local user = fake_user("u@example.test", USER_A_SETTINGS,
			{ ["Projekt Übersicht"] = { uidvalidity = 1733330001.0 } })
		run(user, { { "mailbox_create", { name = "MailboxCreate",
			mailbox = "Projekt Übersicht" } } })
		local l = written()[1]
		expect(l.raw:find('"uidvalidity":1733330001,', 1, true),
			"uidvalidity in " .. l.raw)
		expect_eq(user.status_items[1], STATUS_UIDVALIDITY, "status item")
		expect_eq(#user.freed, 1, "mailboxes freed")
		expect_eq(#logged, 0, "errors logged")
		expect_eq(l.obj.values.userdb.keys[1], "kafka_push", "userdb")
	end)

check("MailboxCreate: status failure writes uidvalidity 0, logs, frees",
	function()
		reset_file()
		local user = fake_user("u@example.test", USER_A_SETTINGS, {})
		run(user, { { "mailbox_create", { name = "MailboxCreate",
			mailbox = "Gone" } } })
		local l = written()[1]
		expect(l.raw:find('"uidvalidity":0,', 1, true), "uidvalidity 0")
		expect_eq(#user.freed, 1, "mailboxes freed")
		expect_eq(#logged, 1, "errors logged")
		expect(logged[1]:find("^push%-events: MailboxCreate"), logged[1])
	end)

check("MailboxRename carries mailbox_old; mailbox events carry no uid",
	function()
		reset_file()
		run(fake_user("u@example.test", USER_A_SETTINGS), {
			{ "mailbox_rename", { name = "MailboxRename",
				mailbox = "Archive/Übersicht 2024",
				mailbox_old = "Projekt Übersicht" } },
			{ "mailbox_subscribe", { name = "MailboxSubscribe",
				mailbox = "A" } },
			{ "mailbox_unsubscribe", { name = "MailboxUnsubscribe",
				mailbox = "A" } },
		})
		local lines = written()
		expect_eq(field(lines[1], "mailbox_old"), "Projekt Übersicht", "old")
		expect_eq(field(lines[1], "mailbox"), "Archive/Übersicht 2024", "new")
		for _, l in ipairs(lines) do
			expect(l.obj.values.uid == nil, "uid on a mailbox event")
		end
		expect_eq(field(lines[3], "event"), "MailboxUnsubscribe", "event")
	end)

check("garbage events: logged, dropped, the others still written",
	function()
		reset_file()
		local ok_event = { name = "MessageRead", mailbox = "INBOX", uid = 1.0,
			uid_validity = 2.0 }
		local garbage = {
			{ "message_read", nil },
			{ "message_read", "not a table" },
			{ "message_read", { name = "MessageRead", uid = 1.0,
				uid_validity = 2.0 } }, -- no mailbox
			{ "message_expunge", { mailbox = "INBOX", uid = "1",
				uid_validity = 2.0 } },
			{ "message_trash", { mailbox = "INBOX", uid = 1.5,
				uid_validity = 2.0 } },
			{ "message_trash", { mailbox = "INBOX", uid = 0 / 0,
				uid_validity = 2.0 } },
			{ "flags_set", { mailbox = "INBOX", uid = 1.0, uid_validity = 2.0,
				flags = "\\Seen" } },
			{ "flags_clear", { mailbox = "INBOX", uid = 1.0,
				uid_validity = 2.0, flags = {}, keywords = { 1, 2 } } },
			{ "message_new", without(message(), "from") },
			{ "message_new", without(message(), "tz") },
			{ "message_append", message({ date = "yesterday" }) },
			{ "message_new", message({ subject = {} }) },
			{ "mailbox_rename", { mailbox = "A" } },
			{ "mailbox_delete", { mailbox = 42 } },
		}
		local calls = { { "message_read", ok_event } }
		for _, g in ipairs(garbage) do
			calls[#calls + 1] = g
		end
		calls[#calls + 1] = { "message_read", ok_event }
		local user = fake_user("u@example.test", USER_A_SETTINGS)
		local ctx = dovecot_lua_notify_begin_txn(user)
		for _, call in ipairs(calls) do
			_G["dovecot_lua_notify_event_" .. call[1]](ctx, call[2])
		end
		dovecot_lua_notify_event_message_read(nil, ok_event) -- no ctx
		dovecot_lua_notify_event_message_read(42, ok_event)
		dovecot_lua_notify_end_txn(ctx, true)
		dovecot_lua_notify_end_txn(nil, true)
		dovecot_lua_notify_end_txn("x", true)

		local lines = written()
		expect_eq(#lines, 2, "lines written")
		expect_eq(#logged, #garbage + 4, "errors logged")
		for _, msg in ipairs(logged) do
			expect(msg:find("^push%-events: "), "prefix missing: " .. msg)
		end
	end)

check("begin_txn never raises and returns a usable table", function()
	reset_file()
	local bad_users = {
		nil,
		"user",
		{},
		{ username = 42, plugin_getenv = function() return nil end },
		{ username = "u@example.test",
			plugin_getenv = function() error("boom") end },
		setmetatable({ username = "u@example.test" },
			{ __index = function() error("no such method") end }),
	}
	for i = 1, 6 do
		local ok, ctx = pcall(dovecot_lua_notify_begin_txn, bad_users[i])
		expect(ok, "begin_txn raised: " .. tostring(ctx))
		expect(type(ctx) == "table", "begin_txn returned " .. type(ctx))
		local ok2 = pcall(dovecot_lua_notify_event_message_read, ctx,
			{ mailbox = "INBOX", uid = 1.0, uid_validity = 1.0 })
		expect(ok2, "handler raised on a failed transaction")
		local ok3 = pcall(dovecot_lua_notify_end_txn, ctx, true)
		expect(ok3, "end_txn raised on a failed transaction")
	end
	expect_eq(#written(), 0, "lines written")
	-- one error from begin_txn, one summary from end_txn per transaction
	expect_eq(#logged, 12, "errors logged")
end)

check("begin_txn survives a failing i_error", function()
	local saved = dovecot.i_error
	dovecot.i_error = function() error("log is broken") end
	local ok, ctx = pcall(dovecot_lua_notify_begin_txn, nil)
	dovecot.i_error = saved
	expect(ok and type(ctx) == "table", "begin_txn raised")
end)

check("two overlapping transactions stay separate", function()
	reset_file()
	local a = fake_user("user-a@example.test", USER_A_SETTINGS)
	local c = fake_user("user-c@example.test",
		{ push_events_path = events_path })
	local ev = function(box, uid)
		return { name = "MessageExpunge", mailbox = box, uid = uid,
			uid_validity = 9.0 }
	end
	-- like a MOVE: the target transaction starts, then the source one
	local t1 = dovecot_lua_notify_begin_txn(a)
	local t2 = dovecot_lua_notify_begin_txn(c)
	dovecot_lua_notify_event_message_append(t1,
		message({ name = "MessageAppend", mailbox = "Target", uid = 1.0 }))
	dovecot_lua_notify_event_message_expunge(t2, ev("INBOX", 4.0))
	dovecot_lua_notify_event_message_append(t1,
		message({ name = "MessageAppend", mailbox = "Target", uid = 2.0 }))
	dovecot_lua_notify_end_txn(t2, true)
	dovecot_lua_notify_event_message_expunge(t1, ev("Target", 3.0))
	dovecot_lua_notify_end_txn(t1, true)

	local lines = written()
	expect_eq(#lines, 4, "lines")
	expect_eq(field(lines[1], "user"), "user-c@example.test", "first user")
	expect(lines[1].obj.values.userdb == nil, "userdb leaked into user-c")
	for i = 2, 4 do
		expect_eq(field(lines[i], "user"), "user-a@example.test", "user")
		expect(lines[i].obj.values.userdb ~= nil, "userdb missing")
	end
	expect_eq(field(lines[2], "uid"), 1, "order")
	expect_eq(field(lines[3], "uid"), 2, "order")
	expect_eq(field(lines[4], "event"), "MessageExpunge", "order")
end)

check("a failed transaction (success=false) writes nothing", function()
	reset_file()
	run(fake_user("u@example.test", USER_A_SETTINGS),
		{ { "message_read", { mailbox = "INBOX", uid = 1.0,
			uid_validity = 1.0 } } }, false)
	expect_eq(#written(), 0, "lines written")
	expect_eq(#logged, 0, "errors logged")
end)

check("unset push_events_path: logged, nothing raised", function()
	run(fake_user("u@example.test", {}), { { "message_read",
		{ mailbox = "INBOX", uid = 1.0, uid_validity = 1.0 } } })
	expect_eq(#logged, 1, "errors logged")
	expect(logged[1]:find("push_events_path is not set", 1, true), logged[1])
end)

check("unwritable events file: logged with the count, nothing raised",
	function()
		local settings = { push_events_path = "/nonexistent/dir/events.jsonl" }
		run(fake_user("u@example.test", settings), {
			{ "message_read", { mailbox = "INBOX", uid = 1.0,
				uid_validity = 1.0 } },
			{ "message_trash", { mailbox = "INBOX", uid = 1.0,
				uid_validity = 1.0 } },
		})
		expect_eq(#logged, 1, "errors logged")
		expect(logged[1]:find("(2 of 2 events lost)", 1, true), logged[1])
	end)

check("file rotated between transactions: next one writes the new file",
	function()
		reset_file()
		local user = fake_user("u@example.test", USER_A_SETTINGS)
		local ev = { mailbox = "INBOX", uid = 1.0, uid_validity = 1.0 }
		run(user, { { "message_read", ev } })
		local rotated = events_path .. ".1"
		assert(os.rename(events_path, rotated))
		run(user, { { "message_read", ev }, { "message_trash", ev } })
		expect_eq(#written(), 2, "lines in the new file")
		expect_eq(#file_lines(rotated), 1, "lines in the rotated file")
		os.remove(rotated)
	end)

check("concurrent writers: 4 processes x 2000 lines of 5-20 KB, no tear",
	function()
		reset_file()
		local writers, per_writer = 4, 2000
		local lua = arg[-1] or "lua5.4"
		local cmd = {}
		for id = 1, writers do
			cmd[#cmd + 1] = string.format("%s %s --writer %s %s %d %d &",
				shell_quote(lua), shell_quote(arg[0]),
				shell_quote(script_path), shell_quote(events_path), id,
				per_writer)
		end
		-- wait without operands always succeeds: a failed writer reports
		-- on stderr, and the line counts below catch it.
		cmd[#cmd + 1] = "wait"
		local ok = os.execute(table.concat(cmd, " "))
		expect(ok, "writers failed")

		local seen, count, bytes = {}, 0, 0
		for _, line in ipairs(file_lines(events_path)) do
			count = count + 1
			bytes = bytes + #line
			local ok_line, obj = pcall(decode_line, line)
			expect(ok_line, "line " .. count .. " is not a JSON object: " ..
				tostring(obj))
			local subject = obj.values.subject
			expect(not seen[subject], "duplicate line " .. subject)
			seen[subject] = true
			expect(#line >= 5000, "short line " .. subject)
		end
		expect_eq(count, writers * per_writer, "lines")
		for id = 1, writers do
			for seq = 1, per_writer do
				expect(seen["w" .. id .. "-" .. seq], "missing line")
			end
		end
		print(string.format("     (%d lines, %.1f MB)", count, bytes / 1e6))
	end)

check("push_events_output: unset, \"\" and \"file\" write the file",
	function()
		reset_file()
		local ev = { mailbox = "INBOX", uid = 1.0, uid_validity = 1.0 }
		for _, v in ipairs({ "", "file" }) do
			run(fake_user("u@example.test", { push_events_path = events_path,
				push_events_output = v }), { { "message_read", ev } })
		end
		run(fake_user("u@example.test", { push_events_path = events_path }),
			{ { "message_read", ev } })
		local lines = written()
		expect_eq(#lines, 3, "lines written")
		expect_eq(lines[1].raw:gsub('"time":%d+', ""),
			lines[3].raw:gsub('"time":%d+', ""), "same line")
		expect_eq(#logged, 0, "errors logged")
	end)

check("push_events_output = exporter writes no line", function()
	reset_file()
	dovecot.event = function()
		error("event() called")
	end
	run(fake_user("u@example.test", { push_events_path = events_path,
		push_events_output = "exporter" }), { { "message_read",
		{ mailbox = "INBOX", uid = 1.0, uid_validity = 1.0 } } })
	dovecot.event = nil
	expect_eq(#written(), 0, "lines written")
	expect_eq(#logged, 1, "errors logged")
	expect(logged[1]:find("^push%-events%-exporter: cannot send events"),
		logged[1])
end)

check("script_init settings (Dovecot 2.4) override plugin settings",
	function()
		reset_file()
		local other = os.tmpname()
		expect_eq(script_init({ push_events_path = other }), 0, "return")
		run(fake_user("u@example.test", USER_A_SETTINGS), { { "message_read",
			{ mailbox = "INBOX", uid = 1.0, uid_validity = 1.0 } } })
		expect_eq(#file_lines(other), 1, "lines in the script_init path")
		expect_eq(#written(), 0, "lines in the plugin setting path")
		os.remove(other)
	end)

check("Dovecot 2.4 user (no plugin_getenv): userdb through var_expand",
	function()
		reset_file()
		script_init({ push_events_path = events_path,
			push_events_userdb_fields = "kafka_push,plan" })
		local user = { username = "u@example.test" }
		function user.var_expand(_, fmt)
			local values = { ["%{userdb:kafka_push}"] = "on" }
			return values[fmt] or ""
		end
		run(user, { { "message_read",
			{ mailbox = "INBOX", uid = 1.0, uid_validity = 1.0 } } })
		local l = written()[1]
		expect(l.raw:find('"userdb":{"kafka_push":"on"}', 1, true), l.raw)
	end)

reset_file()
print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and 0 or 1)
