-- push-events-exporter.lua: hands every Dovecot push-notification event to
-- Dovecot's event exporter as one named event, "dovecot_kafka_event". The
-- stats process writes it out (Dovecot 2.3: as a line of its log; 2.4: as a
-- line of a file of its own), and the dovecot-kafka daemon, configured with
-- input = "exporter-log" or "exporter-file", reads it from there and
-- publishes it to Kafka exactly as it publishes the lines of push-events.lua.
--
-- This script writes no file: the IMAP and LMTP processes only send events
-- over Dovecot's stats connection, which they hold anyway. Choose it over
-- push-events.lua when mail processes must not write files; see
-- docs/exporter.md for what it costs.
--
-- Tested on Dovecot 2.3.19.1 (Debian 12, dovecot-core with the Lua 5.4
-- plugins) with exporter-2.3.conf; exporter-2.4.conf is the untested 2.4
-- setup (settings through script_init, userdb fields through var_expand).
--
-- Enabled by (Dovecot 2.3; exporter-2.3.conf is the commented version):
--
--   protocol imap {
--     mail_plugins = $mail_plugins notify push_notification mail_lua push_notification_lua
--   }
--   protocol lmtp {
--     mail_plugins = $mail_plugins notify push_notification mail_lua push_notification_lua
--   }
--   plugin {
--     push_notification_driver = lua:file=/etc/dovecot/push-events-exporter.lua
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
-- The event's fields (docs/exporter.md is the contract with the daemon):
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
-- How events reach the exporter: the handlers only collect the fields in
-- the transaction's context table; dovecot_lua_notify_end_txn sends one
-- event per push-notification event, in order, and only for a transaction
-- that succeeded, as push-events.lua writes its lines.
--
-- Errors: nothing raises into Dovecot. Every entry point runs under pcall
-- and reports through dovecot.i_error with the prefix
-- "push-events-exporter: ". An event the script cannot build is dropped and
-- the other events of its transaction are still sent. If the uidvalidity of
-- a new mailbox cannot be read, MailboxCreate carries 0 and the error is
-- logged.

-- luacheck: globals script_init dovecot_lua_notify_begin_txn
-- luacheck: globals dovecot_lua_notify_end_txn
-- luacheck: globals dovecot_lua_notify_event_flags_set
-- luacheck: globals dovecot_lua_notify_event_flags_clear
-- luacheck: globals dovecot_lua_notify_event_mailbox_create
-- luacheck: globals dovecot_lua_notify_event_mailbox_delete
-- luacheck: globals dovecot_lua_notify_event_mailbox_rename
-- luacheck: globals dovecot_lua_notify_event_mailbox_subscribe
-- luacheck: globals dovecot_lua_notify_event_mailbox_unsubscribe
-- luacheck: globals dovecot_lua_notify_event_message_append
-- luacheck: globals dovecot_lua_notify_event_message_expunge
-- luacheck: globals dovecot_lua_notify_event_message_new
-- luacheck: globals dovecot_lua_notify_event_message_read
-- luacheck: globals dovecot_lua_notify_event_message_trash
-- luacheck: read globals dovecot

local LOG_PREFIX = "push-events-exporter: "

-- The event name the exporter's metric filters on (event=...) and the
-- daemon looks for.
local EVENT_NAME = "dovecot_kafka_event"

-- The version of the field set; the daemon ignores fields it does not know.
local FIELDS_VERSION = 1

local REPLACEMENT_CHAR = "\239\191\189" -- U+FFFD in UTF-8

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
-- replaced by U+FFFD, and NUL bytes too: the exporter's values are C
-- strings, which end at the first NUL.
local function valid_utf8(s)
	if s:find("\0", 1, true) then
		s = s:gsub("%z", REPLACEMENT_CHAR)
	end
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

-- checked_string returns s made valid for a field. what names the value in
-- the error raised for anything that is not a string.
local function checked_string(s, what)
	if type(s) ~= "string" then
		error(what .. " is " .. type(s) .. ", not a string", 0)
	end
	return valid_utf8(s)
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

-- joined_list returns a list of strings as one string, items separated by
-- one space; nil or an empty table gives "".
local function joined_list(t, what)
	if t == nil then
		return ""
	end
	if type(t) ~= "table" then
		error(what .. " is " .. type(t) .. ", not a table", 0)
	end

	local items = {}
	for i, s in ipairs(t) do
		s = checked_string(s, what)
		if s == "" or s:find("%s") then
			error(what .. " item " .. string.format("%q", s) ..
				" is empty or holds white space", 0)
		end
		items[i] = s
	end
	return table.concat(items, " ")
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

-- userdb_fields returns the configured userdb fields the user has, as a
-- list of { "userdb_" .. name, value }, in configured order.
local function userdb_fields(user)
	local out = {}
	local raw = setting(user, "push_events_userdb_fields")
	if raw == nil or raw == "" then
		return out
	end

	for _, name in ipairs(field_list(raw)) do
		local value = userdb_value(user, name)
		if value ~= nil then
			out[#out + 1] = { "userdb_" .. name,
				checked_string(value, "userdb field " .. name) }
		end
	end
	return out
end

local function new_txn(user)
	if type(user) ~= "table" then
		error("user is " .. type(user) .. ", not a mail user", 0)
	end

	return {
		user = user, -- kept for MailboxCreate, which asks the mailbox
		username = checked_string(user.username, "username"),
		userdb = userdb_fields(user),
		events = {},
		n = 0,
	}
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

-- add_message_ids adds what every message event carries.
local function add_message_ids(b, event)
	add_int(b, "push_uidvalidity",
		checked_int(event.uid_validity, "uid_validity"))
	add_int(b, "push_uid", checked_int(event.uid, "uid"))
end

local function add_flag_change(b, _, event)
	add_message_ids(b, event)
	add_str(b, "push_flags", joined_list(event.flags, "flags"))
	add_str(b, "push_keywords", joined_list(event.keywords, "keywords"))
end

local function add_message_content(b, _, event)
	add_message_ids(b, event)
	if not is_empty_list(event.flags) then
		add_str(b, "push_flags", joined_list(event.flags, "flags"))
	end
	if not is_empty_list(event.keywords) then
		add_str(b, "push_keywords", joined_list(event.keywords, "keywords"))
	end
	add_int(b, "push_date", checked_int(event.date, "date"))
	add_int(b, "push_tz", checked_int(event.tz, "tz"))
	add_str(b, "push_from", checked_string(event.from, "from"))
	add_str(b, "push_to", checked_string(event.to, "to"))
	if event.subject ~= nil then
		add_str(b, "push_subject", checked_string(event.subject, "subject"))
	end
	add_str(b, "push_snippet", checked_string(event.snippet or "", "snippet"))
end

local function add_message_only(b, _, event)
	add_message_ids(b, event)
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
	return checked_int(status.uidvalidity, "status uidvalidity")
end

-- add_mailbox_uidvalidity asks the new mailbox for its UIDVALIDITY: the
-- driver hands over none for mailbox events.
local function add_mailbox_uidvalidity(b, ctx, event)
	local ok, v = pcall(read_uidvalidity, ctx.user, event.mailbox)
	if not ok then
		log_error("MailboxCreate: cannot read uidvalidity, sending 0: " ..
			tostring(v))
		v = 0
	end
	add_int(b, "push_uidvalidity", v)
end

local function add_mailbox_old(b, _, event)
	add_str(b, "push_mailbox_old",
		checked_string(event.mailbox_old, "mailbox_old"))
end

-- collect builds the fields of one event and keeps them in ctx.
local function collect(ctx, event, name, add_fields)
	if ctx.failed then
		ctx.dropped = ctx.dropped + 1
		return
	end
	if type(event) ~= "table" then
		error("event is " .. type(event) .. ", not a table", 0)
	end

	local b = { n = 0, bytes = 0 }
	add_int(b, "push_v", FIELDS_VERSION)
	add_int(b, "push_time", os.time())
	add_str(b, "push_user", ctx.username)
	add_str(b, "push_event", name)
	add_str(b, "push_mailbox", checked_string(event.mailbox, "mailbox"))
	add_fields(b, ctx, event)
	for _, f in ipairs(ctx.userdb) do
		add_str(b, f[1], f[2])
	end
	add_int(b, "push_bytes", b.bytes)

	ctx.n = ctx.n + 1
	ctx.events[ctx.n] = b
end

-- record is the body of every event handler: it never raises, and a failure
-- loses only this event.
local function record(ctx, event, name, add_fields)
	local ok, err = pcall(collect, ctx, event, name, add_fields)
	if not ok then
		log_error(name .. ": event dropped: " .. tostring(err))
	end
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

	local lost, first_err = 0, nil
	for i = 1, ctx.n do
		local ok, err = pcall(send, ctx.events[i])
		if not ok then
			lost = lost + 1
			first_err = first_err or err
		end
	end
	if lost > 0 then
		log_error(string.format("cannot send events: %s (%d of %d events lost)",
			tostring(first_err), lost, ctx.n))
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
	return { failed = true, events = {}, n = 0, dropped = 0 }
end

-- dovecot_lua_notify_end_txn sends the transaction's events.
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
