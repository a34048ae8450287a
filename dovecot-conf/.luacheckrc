-- luacheck configuration for the Dovecot Lua script and its tests.
-- Run from this directory ("luacheck .") or from the repository root
-- ("luacheck --config dovecot-conf/.luacheckrc dovecot-conf/").

std = "lua54"

-- Functions the push_notification_lua driver (and the Lua loader) call by
-- name; the script must define them as globals.
local dovecot_entry_points = {
	"script_init",
	"dovecot_lua_notify_begin_txn",
	"dovecot_lua_notify_end_txn",
	"dovecot_lua_notify_event_flags_set",
	"dovecot_lua_notify_event_flags_clear",
	"dovecot_lua_notify_event_mailbox_create",
	"dovecot_lua_notify_event_mailbox_delete",
	"dovecot_lua_notify_event_mailbox_rename",
	"dovecot_lua_notify_event_mailbox_subscribe",
	"dovecot_lua_notify_event_mailbox_unsubscribe",
	"dovecot_lua_notify_event_message_append",
	"dovecot_lua_notify_event_message_expunge",
	"dovecot_lua_notify_event_message_new",
	"dovecot_lua_notify_event_message_read",
	"dovecot_lua_notify_event_message_trash",
}

files["**/push-events.lua"] = {
	globals = dovecot_entry_points,
	-- Set by Dovecot before the script runs.
	read_globals = { "dovecot" },
}

-- The tests install a fake dovecot global and call the entry points.
files["**/test/*.lua"] = {
	globals = { "dovecot" },
	read_globals = dovecot_entry_points,
}
