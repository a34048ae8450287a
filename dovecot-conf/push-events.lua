-- push-events.lua: appends one JSON line per Dovecot push-notification event
-- to a local events file. The dovecot-kafka daemon follows that file and
-- publishes the events to Kafka; Dovecot itself never talks to Kafka.
--
-- Tested on Dovecot 2.3.19.1 (Debian 12, dovecot-core with the Lua 5.4
-- plugins). Written so that it should also run on 2.4 (settings through
-- script_init, userdb fields through var_expand), but that is untested.
--
-- Enabled by (Dovecot 2.3; push-events-2.3.conf is the commented version,
-- which also covers LDA):
--
--   protocol imap {
--     mail_plugins = $mail_plugins notify push_notification mail_lua push_notification_lua
--   }
--   protocol lmtp {
--     mail_plugins = $mail_plugins notify push_notification mail_lua push_notification_lua
--   }
--   plugin {
--     push_notification_driver = lua:file=/etc/dovecot/push-events.lua
--     push_events_path = /var/spool/dovecot-kafka/events.jsonl
--     push_events_userdb_fields = kafka_push,customer_id,plan
--   }
--
-- push_events_path must be the daemon's events_file. The field names in
-- push_events_userdb_fields (comma- or space-separated) are looked up per
-- user; those the user has go into the line's "userdb" object, in that order.
--
-- Line format: one JSON object per event, valid UTF-8, ended by "\n", e.g.
--
--   {"v":1,"time":1733331200,"user":"u@example.test","event":"MessageRead",
--    "mailbox":"INBOX","uidvalidity":1733330000,"uid":2}
--
-- (one line in the file). The fields are documented in events-format.md next
-- to this script; that file is the contract with the daemon.
--
-- How lines reach the file:
--
--   * The event handlers only build lines and keep them in the transaction's
--     context table; nothing is shared between transactions (a MOVE runs two
--     overlapping ones).
--   * dovecot_lua_notify_end_txn opens the file by path in append mode,
--     unbuffered, writes the transaction's lines with one write(2) (batches
--     of whole lines up to MAX_WRITE_BYTES), and closes it. O_APPEND makes
--     each write land at the end of the file in one piece, so lines of
--     concurrent Dovecot processes never interleave.
--   * Opening by path in every transaction is what makes rotation safe: after
--     a rename-and-create (logrotate's default) the next transaction writes
--     to the new file, even in an IMAP process that lives for days; after a
--     copytruncate O_APPEND puts the next write at the new end. The cost is
--     one open/write/close per transaction that produced events.
--
-- Errors: nothing raises into Dovecot (an error in begin_txn would make the
-- process panic later, and for LMTP the sender would deliver the mail
-- again). Every entry point runs under pcall and reports through
-- dovecot.i_error with the prefix "push-events: ". An event the script cannot
-- encode is dropped and the other events of its transaction are still
-- written. If the uidvalidity of a new mailbox cannot be read, MailboxCreate
-- is written with "uidvalidity":0 and the error is logged.
--
-- Ownership: imap and lmtp run as the mail user (e.g. vmail), and Dovecot's
-- master process sets umask 0077, so a file the script creates is owned by
-- that user with mode 0600. Either run the daemon as that user, or give the
-- daemon's group a setgid directory with a default ACL granting read access
-- (with a default ACL the kernel ignores the umask) and have logrotate
-- create the file with that group. See push-events-2.3.conf.
--
-- The handlers run before Dovecot answers the client (the IMAP tagged OK,
-- the LMTP reply), so they do little: build a string, append it to a table.
-- Only MailboxCreate asks Dovecot for something (the mailbox status).

local LOG_PREFIX = "push-events: "

-- Lines of one transaction are written in batches of whole lines of at most
-- this many bytes, each batch with a single write(2). A longer single line
-- is still written with one write(2).
local MAX_WRITE_BYTES = 1048576

local LINE_START = '{"v":1,"time":'

local REPLACEMENT_CHAR = "\239\191\189" -- U+FFFD in UTF-8

-- Bytes that JSON needs escaped, and how this script writes them.
local ESCAPE_PATTERN = '[\0-\31"\\]'
local ESCAPES = {
	['"'] = '\\"',
	["\\"] = "\\\\",
	["\b"] = "\\b",
	["\f"] = "\\f",
	["\n"] = "\\n",
	["\r"] = "\\r",
	["\t"] = "\\t",
}
for byte = 0, 31 do
	local c = string.char(byte)
	if ESCAPES[c] == nil then
		ESCAPES[c] = string.format("\\u%04x", byte)
	end
end

-- Settings handed to script_init (Dovecot 2.4 lua_settings). Dovecot 2.3
-- calls script_init without arguments and the script reads plugin settings
-- instead.
local init_settings = {}

-- Parsed push_events_userdb_fields, cached per raw setting value.
local field_list_cache = {}

local function emit_error(msg)
	dovecot.i_error(LOG_PREFIX .. msg)
end

-- log_error reports msg through Dovecot's error log. It never raises.
local function log_error(msg)
	pcall(emit_error, tostring(msg))
end

-- valid_utf8 returns s with each byte of every invalid UTF-8 sequence
-- replaced by U+FFFD. utf8.len (strict: no surrogates, nothing above
-- U+10FFFF, no overlong forms) is the fast check for the common case.
local function valid_utf8(s)
	if utf8.len(s) then
		return s
	end

	local out, n, i = {}, 0, 1
	while i <= #s do
		local ok, bad = utf8.len(s, i)
		if ok then
			n = n + 1
			out[n] = s:sub(i)
			break
		end
		n = n + 1
		out[n] = s:sub(i, bad - 1)
		n = n + 1
		out[n] = REPLACEMENT_CHAR
		i = bad + 1
	end
	return table.concat(out)
end

-- json_string encodes a Lua string as a JSON string. what names the value in
-- the error raised for anything that is not a string.
local function json_string(s, what)
	if type(s) ~= "string" then
		error(what .. " is " .. type(s) .. ", not a string", 0)
	end

	s = valid_utf8(s)
	if s:find(ESCAPE_PATTERN) then
		s = s:gsub(ESCAPE_PATTERN, ESCAPES)
	end
	return '"' .. s .. '"'
end

-- json_int encodes a number that holds an integer (Dovecot hands over
-- floats such as 1.0) as a JSON integer.
local function json_int(v, what)
	if type(v) ~= "number" then
		error(what .. " is " .. type(v) .. ", not a number", 0)
	end

	local i = math.tointeger(v)
	if i == nil then
		error(what .. " is not an integer", 0)
	end
	return string.format("%d", i)
end

-- json_string_array encodes a list of strings; nil or an empty table gives
-- "[]", never "{}".
local function json_string_array(t, what)
	if t == nil then
		return "[]"
	end
	if type(t) ~= "table" then
		error(what .. " is " .. type(t) .. ", not a table", 0)
	end

	local items = {}
	for i, s in ipairs(t) do
		items[i] = json_string(s, what)
	end
	return "[" .. table.concat(items, ",") .. "]"
end

local function is_empty_list(t)
	return t == nil or (type(t) == "table" and t[1] == nil)
end

-- setting returns a script setting: from script_init (2.4) or the plugin
-- settings of the user (2.3). nil when unset.
local function setting(user, name)
	local v = init_settings[name]
	if v ~= nil then
		return v
	end
	if user.plugin_getenv ~= nil then
		return user:plugin_getenv(name)
	end
	return nil
end

-- userdb_value returns the value of the userdb field name, or nil if the
-- user has none. On 2.3 userdb fields are visible as plugin settings. 2.4
-- has no plugin_getenv; var_expand there gives "" for a missing field, so an
-- empty field reads as missing.
local function userdb_value(user, name)
	if user.plugin_getenv ~= nil then
		return user:plugin_getenv(name)
	end

	local ok, v = pcall(user.var_expand, user, "%{userdb:" .. name .. "}")
	if ok and type(v) == "string" and v ~= "" then
		return v
	end
	return nil
end

-- field_list splits push_events_userdb_fields into names, in order, each
-- once. Names other than letters, digits, "_", "-" and "." are ignored.
local function field_list(raw)
	local list = field_list_cache[raw]
	if list ~= nil then
		return list
	end

	list = {}
	local seen = {}
	for name in raw:gmatch("[^,%s]+") do
		if not seen[name] then
			seen[name] = true
			if name:find("^[%w_.-]+$") then
				list[#list + 1] = name
			else
				log_error(string.format(
					"push_events_userdb_fields: ignoring field name %q", name))
			end
		end
	end
	field_list_cache[raw] = list
	return list
end

-- userdb_json encodes the configured userdb fields the user has as a JSON
-- object, keys in configured order; nil when there are none.
local function userdb_json(user)
	local raw = setting(user, "push_events_userdb_fields")
	if raw == nil or raw == "" then
		return nil
	end

	local members = {}
	for _, name in ipairs(field_list(raw)) do
		local value = userdb_value(user, name)
		if value ~= nil then
			members[#members + 1] = json_string(name, "userdb field name") ..
				":" .. json_string(value, "userdb field " .. name)
		end
	end
	if #members == 0 then
		return nil
	end
	return "{" .. table.concat(members, ",") .. "}"
end

local function new_txn(user)
	if type(user) ~= "table" then
		error("user is " .. type(user) .. ", not a mail user", 0)
	end

	local ctx = {
		user = user, -- kept for MailboxCreate, which asks the mailbox
		user_json = json_string(user.username, "username"),
		path = setting(user, "push_events_path"),
		userdb_json = userdb_json(user),
		lines = {},
		n = 0,
		dropped = 0,
	}
	return ctx
end

-- add_message_ids adds what every message event carries.
local function add_message_ids(parts, event)
	parts[#parts + 1] = ',"uidvalidity":' ..
		json_int(event.uid_validity, "uid_validity")
	parts[#parts + 1] = ',"uid":' .. json_int(event.uid, "uid")
end

local function add_flag_change(parts, _, event)
	add_message_ids(parts, event)
	parts[#parts + 1] = ',"flags":' .. json_string_array(event.flags, "flags")
	parts[#parts + 1] = ',"keywords":' ..
		json_string_array(event.keywords, "keywords")
end

local function add_message_content(parts, _, event)
	add_message_ids(parts, event)
	if not is_empty_list(event.flags) then
		parts[#parts + 1] = ',"flags":' ..
			json_string_array(event.flags, "flags")
	end
	if not is_empty_list(event.keywords) then
		parts[#parts + 1] = ',"keywords":' ..
			json_string_array(event.keywords, "keywords")
	end
	parts[#parts + 1] = ',"date":' .. json_int(event.date, "date")
	parts[#parts + 1] = ',"tz":' .. json_int(event.tz, "tz")
	parts[#parts + 1] = ',"from":' .. json_string(event.from, "from")
	parts[#parts + 1] = ',"to":' .. json_string(event.to, "to")
	if event.subject ~= nil then
		parts[#parts + 1] = ',"subject":' ..
			json_string(event.subject, "subject")
	end
	parts[#parts + 1] = ',"snippet":' ..
		json_string(event.snippet or "", "snippet")
	if event.message_id ~= nil then
		parts[#parts + 1] = ',"message_id":' ..
			json_string(event.message_id, "message_id")
	end
end

local function add_message_only(parts, _, event)
	add_message_ids(parts, event)
end

local function add_nothing()
end

local function read_uidvalidity(user, name)
	local box = user:mailbox(name)
	local ok, status = pcall(box.status, box,
		dovecot.storage.STATUS_UIDVALIDITY)
	local freed, free_err = pcall(box.free, box)
	if not ok then
		error(status, 0)
	end
	if not freed then
		log_error("MailboxCreate: mailbox:free() failed: " .. tostring(free_err))
	end
	return json_int(status.uidvalidity, "status uidvalidity")
end

-- add_mailbox_uidvalidity asks the new mailbox for its UIDVALIDITY: the
-- driver hands over none for mailbox events.
local function add_mailbox_uidvalidity(parts, ctx, event)
	local ok, v = pcall(read_uidvalidity, ctx.user, event.mailbox)
	if not ok then
		log_error("MailboxCreate: cannot read uidvalidity, writing 0: " ..
			tostring(v))
		v = "0"
	end
	parts[#parts + 1] = ',"uidvalidity":' .. v
end

local function add_mailbox_old(parts, _, event)
	parts[#parts + 1] = ',"mailbox_old":' ..
		json_string(event.mailbox_old, "mailbox_old")
end

-- append_line builds the line for one event and keeps it in ctx.
local function append_line(ctx, event, name, add_fields)
	if ctx.failed then
		ctx.dropped = ctx.dropped + 1
		return
	end
	if type(event) ~= "table" then
		error("event is " .. type(event) .. ", not a table", 0)
	end

	local parts = {
		LINE_START, string.format("%d", os.time()),
		',"user":', ctx.user_json,
		',"event":"', name, '"',
		',"mailbox":', json_string(event.mailbox, "mailbox"),
	}
	add_fields(parts, ctx, event)
	if ctx.userdb_json ~= nil then
		parts[#parts + 1] = ',"userdb":' .. ctx.userdb_json
	end
	parts[#parts + 1] = "}\n"

	ctx.n = ctx.n + 1
	ctx.lines[ctx.n] = table.concat(parts)
end

-- record is the body of every event handler: it never raises, and a failure
-- loses only this event.
local function record(ctx, event, name, add_fields)
	local ok, err = pcall(append_line, ctx, event, name, add_fields)
	if not ok then
		log_error(name .. ": event dropped: " .. tostring(err))
	end
end

-- write_lines appends lines[1..n] to path. It returns true, or nil, an
-- error message naming path and how many lines were written before the
-- failure.
local function write_lines(path, lines, n)
	local f, open_err = io.open(path, "a")
	if f == nil then
		return nil, open_err, 0
	end
	f:setvbuf("no") -- each f:write below is then exactly one write(2)

	local first = 1
	while first <= n do
		local last, size = first, #lines[first]
		while last < n and size + #lines[last + 1] <= MAX_WRITE_BYTES do
			last = last + 1
			size = size + #lines[last]
		end

		local ok, write_err = f:write(table.concat(lines, "", first, last))
		if not ok then
			f:close()
			return nil, path .. ": " .. tostring(write_err), first - 1
		end
		first = last + 1
	end

	local ok, close_err = f:close()
	if not ok then
		return nil, path .. ": " .. tostring(close_err), n
	end
	return true
end

local function finish_txn(ctx, success)
	if type(ctx) ~= "table" then
		error("context is " .. type(ctx) .. ", not a table", 0)
	end
	if ctx.failed then
		if ctx.dropped > 0 then
			log_error(string.format(
				"%d events dropped: begin_txn had failed", ctx.dropped))
		end
		return
	end
	if ctx.n == 0 or success == false then
		return
	end
	if type(ctx.path) ~= "string" or ctx.path == "" then
		log_error(string.format(
			"push_events_path is not set, %d events dropped", ctx.n))
		return
	end

	local ok, err, written = write_lines(ctx.path, ctx.lines, ctx.n)
	if not ok then
		log_error(string.format("cannot append to the events file: %s " ..
			"(%d of %d events lost)", tostring(err), ctx.n - written, ctx.n))
	end
end

-- script_init is called once when Dovecot loads the script. Dovecot 2.4
-- passes the lua_settings block as a table; 2.3 passes nothing. It must
-- return 0 on 2.3.
function script_init(settings)
	if type(settings) == "table" then
		for k, v in pairs(settings) do
			if type(k) == "string" and type(v) == "string" then
				init_settings[k] = v
			end
		end
	end
	return 0
end

-- dovecot_lua_notify_begin_txn starts a transaction. It always returns a
-- usable context table; if the user cannot be read, the transaction's events
-- are counted and dropped.
function dovecot_lua_notify_begin_txn(user)
	local ok, ctx = pcall(new_txn, user)
	if ok then
		return ctx
	end
	log_error("begin_txn: " .. tostring(ctx))
	return { failed = true, lines = {}, n = 0, dropped = 0 }
end

-- dovecot_lua_notify_end_txn writes the transaction's lines to the events
-- file.
function dovecot_lua_notify_end_txn(ctx, success)
	local ok, err = pcall(finish_txn, ctx, success)
	if not ok then
		log_error("end_txn: " .. tostring(err))
	end
end

function dovecot_lua_notify_event_flags_set(ctx, event)
	record(ctx, event, "FlagsSet", add_flag_change)
end

function dovecot_lua_notify_event_flags_clear(ctx, event)
	record(ctx, event, "FlagsClear", add_flag_change)
end

function dovecot_lua_notify_event_mailbox_create(ctx, event)
	record(ctx, event, "MailboxCreate", add_mailbox_uidvalidity)
end

function dovecot_lua_notify_event_mailbox_delete(ctx, event)
	record(ctx, event, "MailboxDelete", add_nothing)
end

function dovecot_lua_notify_event_mailbox_rename(ctx, event)
	record(ctx, event, "MailboxRename", add_mailbox_old)
end

function dovecot_lua_notify_event_mailbox_subscribe(ctx, event)
	record(ctx, event, "MailboxSubscribe", add_nothing)
end

function dovecot_lua_notify_event_mailbox_unsubscribe(ctx, event)
	record(ctx, event, "MailboxUnsubscribe", add_nothing)
end

function dovecot_lua_notify_event_message_append(ctx, event)
	record(ctx, event, "MessageAppend", add_message_content)
end

function dovecot_lua_notify_event_message_expunge(ctx, event)
	record(ctx, event, "MessageExpunge", add_message_only)
end

function dovecot_lua_notify_event_message_new(ctx, event)
	record(ctx, event, "MessageNew", add_message_content)
end

function dovecot_lua_notify_event_message_read(ctx, event)
	record(ctx, event, "MessageRead", add_message_only)
end

function dovecot_lua_notify_event_message_trash(ctx, event)
	record(ctx, event, "MessageTrash", add_message_only)
end
