-- push-events.lua: hands every Dovecot push-notification event to the
-- dovecot-kafka daemon, which publishes it to Kafka; Dovecot itself never
-- talks to Kafka. The plugin setting push_events_output chooses the way:
--
--   file      (the default) append one JSON line per event to a local
--             events file, which the daemon follows (input = "lua").
--   exporter  send one named Dovecot event, "dovecot_kafka_event", per
--             event to Dovecot's event exporter. The stats process writes
--             it out (Dovecot 2.3: as a line of its log; 2.4: as a line of
--             a file of its own), and the daemon reads it from there (input
--             = "exporter-log" or "exporter-file"). The mail processes then
--             write no file: they only send events over Dovecot's stats
--             connection, which they hold anyway. See docs/exporter.md for
--             what it costs.
--
-- Tested on Dovecot 2.3.19.1 (Debian 12, dovecot-core with the Lua 5.4
-- plugins), with push-events-2.3.conf and with exporter-2.3.conf. Written so
-- that it should also run on 2.4 (settings through script_init, userdb
-- fields through var_expand; push-events-2.4.conf, exporter-2.4.conf), but
-- that is untested.
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
-- user; those the user has go with each event, in that order.
--
-- For the exporter (exporter-2.3.conf is the commented version), the plugin
-- block has push_events_output = exporter instead of push_events_path, and
-- the exporter and a metric pick the events up:
--
--   plugin {
--     push_notification_driver = lua:file=/etc/dovecot/push-events.lua
--     push_events_output = exporter
--     push_events_userdb_fields = kafka_push,customer_id,plan
--   }
--   event_exporter dovecot_kafka {
--     format = json
--     format_args = time-rfc3339
--     transport = log
--   }
--   metric dovecot_kafka {
--     filter = event=dovecot_kafka_event
--     exporter = dovecot_kafka
--     exporter_include = name timestamps fields
--   }
--
-- File output, line format: one JSON object per event, valid UTF-8, ended
-- by "\n", e.g.
--
--   {"v":1,"time":1733331200,"user":"u@example.test","event":"MessageRead",
--    "mailbox":"INBOX","uidvalidity":1733330000,"uid":2}
--
-- (one line in the file). The fields are documented in events-format.md next
-- to this script; that file is the contract with the daemon. The userdb
-- fields go into the line's "userdb" object.
--
-- Exporter output, the event's fields (docs/exporter.md is the contract
-- with the daemon):
--
--   push_v            integer  1, the version of this field set
--   push_time         integer  when the event happened, Unix seconds
--   push_user         string   the user name (the Kafka key)
--   push_event        string   MessageNew, FlagsSet, ... (the twelve names)
--   push_mailbox      string   the mailbox
--   push_mailbox_old  string   MailboxRename: the name before
--   push_uidvalidity  integer  message events and MailboxCreate
--   push_uid          integer  message events
--   push_flags        string   system flags, separated by one space
--   push_keywords     string   keywords, separated by one space
--   push_date         integer  MessageNew/Append: Date header, UTC seconds
--   push_tz           integer  MessageNew/Append: its offset in minutes
--   push_from, push_to, push_subject, push_snippet
--                     string   MessageNew/Append, as in events-format.md
--   userdb_NAME       string   each field of push_events_userdb_fields the
--                              user has
--   push_bytes        integer  the sum of the byte lengths of every string
--                              field above, so that the daemon can tell a
--                              value cut on the way from a whole one
--
-- Lists are space-separated because an exporter field is a string or an
-- integer: Lua cannot add lists. IMAP flags and keywords are atoms, which
-- never contain a space. Every string is valid UTF-8 (invalid bytes and NUL,
-- which Dovecot's C strings cannot carry, become U+FFFD). The event also
-- carries the fields it inherits from Dovecot's own events (user, session,
-- ...); the daemon reads only push_* and userdb_* fields.
--
-- How events leave the script:
--
--   * The event handlers only build lines (file) or collect fields
--     (exporter) and keep them in the transaction's context table; nothing
--     is shared between transactions (a MOVE runs two overlapping ones).
--     Both outputs hand on a transaction's events only if it succeeded.
--   * File: dovecot_lua_notify_end_txn opens the file by path in append
--     mode, unbuffered, writes the transaction's lines with one write(2)
--     (batches of whole lines up to MAX_WRITE_BYTES), and closes it.
--     O_APPEND makes each write land at the end of the file in one piece, so
--     lines of concurrent Dovecot processes never interleave.
--   * File: opening by path in every transaction is what makes rotation
--     safe: after a rename-and-create (logrotate's default) the next
--     transaction writes to the new file, even in an IMAP process that lives
--     for days; after a copytruncate O_APPEND puts the next write at the new
--     end. The cost is one open/write/close per transaction that produced
--     events.
--   * Exporter: dovecot_lua_notify_end_txn sends one event per
--     push-notification event, in order.
--
-- Errors: nothing raises into Dovecot (an error in begin_txn would make the
-- process panic later, and for LMTP the sender would deliver the mail
-- again). Every entry point runs under pcall and reports through
-- dovecot.i_error with the prefix "push-events: " (file output) or
-- "push-events-exporter: " (exporter output). An event the script cannot
-- encode is dropped and the other events of its transaction are still
-- handed on. If the uidvalidity of a new mailbox cannot be read,
-- MailboxCreate carries uidvalidity 0 and the error is logged. An unknown
-- push_events_output drops the transaction's events and logs why.
--
-- Ownership (file output): imap and lmtp run as the mail user (e.g.
-- vmail), and Dovecot's master process sets umask 0077, so a file the
-- script creates is owned by that user with mode 0600. Either run the
-- daemon as that user, or give the daemon's group a setgid directory with a
-- default ACL granting read access (with a default ACL the kernel ignores
-- the umask) and have logrotate create the file with that group. See
-- push-events-2.3.conf.
--
-- The handlers run before Dovecot answers the client (the IMAP tagged OK,
-- the LMTP reply), so they do little: build a string or a few fields,
-- append them to a table. Only MailboxCreate asks Dovecot for something
-- (the mailbox status).

-- The prefix of errors logged before the output of a transaction is known:
-- that of the output script_init set (Dovecot 2.4), else of the file output.
local default_log_prefix = "push-events: "

-- File output: lines of one transaction are written in batches of whole
-- lines of at most this many bytes, each batch with a single write(2). A
-- longer single line is still written with one write(2).
local MAX_WRITE_BYTES = 1048576

local LINE_START = '{"v":1,"time":'

-- Exporter output: the event name the exporter's metric filters on
-- (event=...) and the daemon looks for.
local EVENT_NAME = "dovecot_kafka_event"

-- Exporter output: the version of the field set; the daemon ignores fields
-- it does not know.
local FIELDS_VERSION = 1

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

local function emit_error(prefix, msg)
	dovecot.i_error(prefix .. msg)
end

-- log_error reports msg through Dovecot's error log, with the prefix of
-- output out (nil: not known yet). It never raises.
local function log_error(out, msg)
	pcall(emit_error, out and out.log_prefix or default_log_prefix,
		tostring(msg))
end

-- Checking and repairing values ---------------------------------------------

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

-- check_string raises unless s is a string. what names the value in the
-- error.
local function check_string(s, what)
	if type(s) ~= "string" then
		error(what .. " is " .. type(s) .. ", not a string", 0)
	end
end

-- checked_int returns a number that holds an integer (Dovecot hands over
-- floats such as 1.0) as a Lua integer.
local function checked_int(v, what)
	if type(v) ~= "number" then
		error(what .. " is " .. type(v) .. ", not a number", 0)
	end

	local i = math.tointeger(v)
	if i == nil then
		error(what .. " is not an integer", 0)
	end
	return i
end

-- check_list raises unless t is nil or a table.
local function check_list(t, what)
	if t ~= nil and type(t) ~= "table" then
		error(what .. " is " .. type(t) .. ", not a table", 0)
	end
end

local function is_empty_list(t)
	return t == nil or (type(t) == "table" and t[1] == nil)
end

-- Settings and userdb fields ------------------------------------------------

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
local function field_list(out, raw)
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
				log_error(out, string.format(
					"push_events_userdb_fields: ignoring field name %q", name))
			end
		end
	end
	field_list_cache[raw] = list
	return list
end

-- userdb_fields returns the configured userdb fields the user has, as a
-- list of { name, value }, in configured order; values are not checked yet.
local function userdb_fields(out, user)
	local fields = {}
	local raw = setting(user, "push_events_userdb_fields")
	if raw == nil or raw == "" then
		return fields
	end

	for _, name in ipairs(field_list(out, raw)) do
		local value = userdb_value(user, name)
		if value ~= nil then
			fields[#fields + 1] = { name, value }
		end
	end
	return fields
end

-- File output ---------------------------------------------------------------

-- json_string encodes a Lua string as a JSON string. what names the value in
-- the error raised for anything that is not a string.
local function json_string(s, what)
	check_string(s, what)
	s = valid_utf8(s)
	if s:find(ESCAPE_PATTERN) then
		s = s:gsub(ESCAPE_PATTERN, ESCAPES)
	end
	return '"' .. s .. '"'
end

-- json_string_array encodes a list of strings; nil or an empty table gives
-- "[]", never "{}".
local function json_string_array(t, what)
	check_list(t, what)
	if t == nil then
		return "[]"
	end

	local items = {}
	for i, s in ipairs(t) do
		items[i] = json_string(s, what)
	end
	return "[" .. table.concat(items, ",") .. "]"
end

-- What goes before the value of each field of a line.
local FILE_KEYS = {}
for _, key in ipairs({ "uidvalidity", "uid", "flags", "keywords", "date",
	"tz", "from", "to", "subject", "snippet", "message_id",
	"mailbox_old" }) do
	FILE_KEYS[key] = ',"' .. key .. '":'
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

-- An output builds the events of a transaction and hands them on. Its
-- functions: new_txn(ctx, user) adds what the output keeps per
-- transaction; start(ctx, name, event) begins an event and returns its
-- builder b; int, str and list add a field to b; finish(ctx, b) ends the
-- event and keeps it in ctx; flush(ctx) hands ctx.items[1..ctx.n] on.
local file_output = {
	log_prefix = "push-events: ",
	zero_verb = "writing", -- for the MailboxCreate error
	message_id = true, -- carries message_id
}

function file_output.new_txn(ctx, user)
	ctx.user_json = json_string(user.username, "username")
	ctx.path = setting(user, "push_events_path")
	local members = {}
	for i, f in ipairs(userdb_fields(file_output, user)) do
		members[i] = json_string(f[1], "userdb field name") .. ":" ..
			json_string(f[2], "userdb field " .. f[1])
	end
	if #members > 0 then
		ctx.userdb_json = "{" .. table.concat(members, ",") .. "}"
	end
end

-- The builder of a line is the list of its parts.
function file_output.start(ctx, name, event)
	return {
		LINE_START, string.format("%d", os.time()),
		',"user":', ctx.user_json,
		',"event":"', name, '"',
		',"mailbox":', json_string(event.mailbox, "mailbox"),
	}
end

function file_output.int(b, key, v, what)
	b[#b + 1] = FILE_KEYS[key] .. string.format("%d", checked_int(v, what))
end

function file_output.str(b, key, s, what)
	b[#b + 1] = FILE_KEYS[key] .. json_string(s, what)
end

function file_output.list(b, key, t, what)
	b[#b + 1] = FILE_KEYS[key] .. json_string_array(t, what)
end

function file_output.finish(ctx, b)
	if ctx.userdb_json ~= nil then
		b[#b + 1] = ',"userdb":' .. ctx.userdb_json
	end
	b[#b + 1] = "}\n"

	ctx.n = ctx.n + 1
	ctx.items[ctx.n] = table.concat(b)
end

function file_output.flush(ctx)
	if type(ctx.path) ~= "string" or ctx.path == "" then
		log_error(file_output, string.format(
			"push_events_path is not set, %d events dropped", ctx.n))
		return
	end

	local ok, err, written = write_lines(ctx.path, ctx.items, ctx.n)
	if not ok then
		log_error(file_output, string.format("cannot append to the events " ..
			"file: %s (%d of %d events lost)", tostring(err), ctx.n - written,
			ctx.n))
	end
end

-- Exporter output -----------------------------------------------------------

-- exporter_string returns s made valid for a field: valid UTF-8 without
-- NUL, since the exporter's values are C strings, which end at the first
-- NUL.
local function exporter_string(s, what)
	check_string(s, what)
	if s:find("\0", 1, true) then
		s = s:gsub("%z", REPLACEMENT_CHAR)
	end
	return valid_utf8(s)
end

-- joined_list returns a list of strings as one string, items separated by
-- one space; nil or an empty table gives "".
local function joined_list(t, what)
	check_list(t, what)
	if t == nil then
		return ""
	end

	local items = {}
	for i, s in ipairs(t) do
		s = exporter_string(s, what)
		if s == "" or s:find("%s") then
			error(what .. " item " .. string.format("%q", s) ..
				" is empty or holds white space", 0)
		end
		items[i] = s
	end
	return table.concat(items, " ")
end

-- The name of each field of an event.
local EXPORTER_KEYS = {}
for key in pairs(FILE_KEYS) do
	EXPORTER_KEYS[key] = "push_" .. key
end

-- A builder collects one event's fields in order: a list of { name,
-- value } pairs, where a Lua integer value becomes an integer field and a
-- string a string field. bytes adds up the string lengths (push_bytes).
local function add_str(b, name, value)
	b.n = b.n + 1
	b[b.n] = { name, value }
	b.bytes = b.bytes + #value
end

local function add_int(b, name, value)
	b.n = b.n + 1
	b[b.n] = { name, value }
end

-- send hands one event to Dovecot. Logging it at debug level is what sends
-- it to the stats process: Dovecot sends an event that a metric's filter
-- matches even when debug logging is off (and then logs nothing).
local function send(b)
	local e = dovecot.event()
	e:set_name(EVENT_NAME)
	for i = 1, b.n do
		local f = b[i]
		if math.type(f[2]) == "integer" then
			e:add_int(f[1], f[2])
		else
			e:add_str(f[1], f[2])
		end
	end
	e:log_debug("push-notification event for dovecot-kafka")
end

local exporter_output = {
	log_prefix = "push-events-exporter: ",
	zero_verb = "sending",
	message_id = false,
}

function exporter_output.new_txn(ctx, user)
	ctx.username = exporter_string(user.username, "username")
	local fields = {}
	for i, f in ipairs(userdb_fields(exporter_output, user)) do
		fields[i] = { "userdb_" .. f[1],
			exporter_string(f[2], "userdb field " .. f[1]) }
	end
	ctx.userdb = fields
end

function exporter_output.start(ctx, name, event)
	local b = { n = 0, bytes = 0 }
	add_int(b, "push_v", FIELDS_VERSION)
	add_int(b, "push_time", os.time())
	add_str(b, "push_user", ctx.username)
	add_str(b, "push_event", name)
	add_str(b, "push_mailbox", exporter_string(event.mailbox, "mailbox"))
	return b
end

function exporter_output.int(b, key, v, what)
	add_int(b, EXPORTER_KEYS[key], checked_int(v, what))
end

function exporter_output.str(b, key, s, what)
	add_str(b, EXPORTER_KEYS[key], exporter_string(s, what))
end

function exporter_output.list(b, key, t, what)
	add_str(b, EXPORTER_KEYS[key], joined_list(t, what))
end

function exporter_output.finish(ctx, b)
	for _, f in ipairs(ctx.userdb) do
		add_str(b, f[1], f[2])
	end
	add_int(b, "push_bytes", b.bytes)

	ctx.n = ctx.n + 1
	ctx.items[ctx.n] = b
end

function exporter_output.flush(ctx)
	local lost, first_err = 0, nil
	for i = 1, ctx.n do
		local ok, err = pcall(send, ctx.items[i])
		if not ok then
			lost = lost + 1
			first_err = first_err or err
		end
	end
	if lost > 0 then
		log_error(exporter_output, string.format(
			"cannot send events: %s (%d of %d events lost)",
			tostring(first_err), lost, ctx.n))
	end
end

-- The values of push_events_output; unset or "" is "file".
local OUTPUTS = {
	file = file_output,
	exporter = exporter_output,
}

-- Events --------------------------------------------------------------------

local function new_txn(user)
	if type(user) ~= "table" then
		error("user is " .. type(user) .. ", not a mail user", 0)
	end

	local name = setting(user, "push_events_output")
	if name == nil or name == "" then
		name = "file"
	end
	local out = OUTPUTS[name]
	if out == nil then
		error(string.format("push_events_output is %q, not file or exporter",
			tostring(name)), 0)
	end

	local ctx = {
		out = out,
		user = user, -- kept for MailboxCreate, which asks the mailbox
		items = {}, -- lines (file) or builders (exporter), in order
		n = 0,
		dropped = 0,
	}
	out.new_txn(ctx, user)
	return ctx
end

-- add_message_ids adds what every message event carries.
local function add_message_ids(out, b, event)
	out.int(b, "uidvalidity", event.uid_validity, "uid_validity")
	out.int(b, "uid", event.uid, "uid")
end

local function add_flag_change(out, b, _, event)
	add_message_ids(out, b, event)
	out.list(b, "flags", event.flags, "flags")
	out.list(b, "keywords", event.keywords, "keywords")
end

local function add_message_content(out, b, _, event)
	add_message_ids(out, b, event)
	if not is_empty_list(event.flags) then
		out.list(b, "flags", event.flags, "flags")
	end
	if not is_empty_list(event.keywords) then
		out.list(b, "keywords", event.keywords, "keywords")
	end
	out.int(b, "date", event.date, "date")
	out.int(b, "tz", event.tz, "tz")
	out.str(b, "from", event.from, "from")
	out.str(b, "to", event.to, "to")
	if event.subject ~= nil then
		out.str(b, "subject", event.subject, "subject")
	end
	out.str(b, "snippet", event.snippet or "", "snippet")
	if out.message_id and event.message_id ~= nil then
		out.str(b, "message_id", event.message_id, "message_id")
	end
end

local function add_message_only(out, b, _, event)
	add_message_ids(out, b, event)
end

local function add_nothing()
end

local function read_uidvalidity(out, user, name)
	local box = user:mailbox(name)
	local ok, status = pcall(box.status, box,
		dovecot.storage.STATUS_UIDVALIDITY)
	local freed, free_err = pcall(box.free, box)
	if not ok then
		error(status, 0)
	end
	if not freed then
		log_error(out, "MailboxCreate: mailbox:free() failed: " ..
			tostring(free_err))
	end
	return checked_int(status.uidvalidity, "status uidvalidity")
end

-- add_mailbox_uidvalidity asks the new mailbox for its UIDVALIDITY: the
-- driver hands over none for mailbox events.
local function add_mailbox_uidvalidity(out, b, ctx, event)
	local ok, v = pcall(read_uidvalidity, out, ctx.user, event.mailbox)
	if not ok then
		log_error(out, "MailboxCreate: cannot read uidvalidity, " ..
			out.zero_verb .. " 0: " .. tostring(v))
		v = 0
	end
	out.int(b, "uidvalidity", v, "uidvalidity")
end

local function add_mailbox_old(out, b, _, event)
	out.str(b, "mailbox_old", event.mailbox_old, "mailbox_old")
end

-- collect builds one event and keeps it in ctx.
local function collect(ctx, event, name, add_fields)
	if ctx.failed then
		ctx.dropped = ctx.dropped + 1
		return
	end
	if type(event) ~= "table" then
		error("event is " .. type(event) .. ", not a table", 0)
	end

	local out = ctx.out
	local b = out.start(ctx, name, event)
	add_fields(out, b, ctx, event)
	out.finish(ctx, b)
end

-- record is the body of every event handler: it never raises, and a failure
-- loses only this event.
local function record(ctx, event, name, add_fields)
	local ok, err = pcall(collect, ctx, event, name, add_fields)
	if not ok then
		log_error(type(ctx) == "table" and ctx.out or nil,
			name .. ": event dropped: " .. tostring(err))
	end
end

local function finish_txn(ctx, success)
	if type(ctx) ~= "table" then
		error("context is " .. type(ctx) .. ", not a table", 0)
	end
	if ctx.failed then
		if ctx.dropped > 0 then
			log_error(ctx.out, string.format(
				"%d events dropped: begin_txn had failed", ctx.dropped))
		end
		return
	end
	if ctx.n == 0 or success == false then
		return
	end
	ctx.out.flush(ctx)
end

-- Entry points --------------------------------------------------------------

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
		local out = OUTPUTS[init_settings.push_events_output]
		if out ~= nil then
			default_log_prefix = out.log_prefix
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
	log_error(nil, "begin_txn: " .. tostring(ctx))
	return { failed = true, items = {}, n = 0, dropped = 0 }
end

-- dovecot_lua_notify_end_txn writes the transaction's lines to the events
-- file, or sends its events to the exporter.
function dovecot_lua_notify_end_txn(ctx, success)
	local ok, err = pcall(finish_txn, ctx, success)
	if not ok then
		log_error(type(ctx) == "table" and ctx.out or nil,
			"end_txn: " .. tostring(err))
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
