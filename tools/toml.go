package tools

import (
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"dovecot-kafka/config"
	"dovecot-kafka/parser"
	"dovecot-kafka/sink"
)

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == utf8.RuneError:
			b.WriteString(`\uFFFD`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// tomlKey writes k bare if TOML allows it, quoted otherwise.
func tomlKey(k string) string {
	if k == "" {
		return `""`
	}
	for _, c := range []byte(k) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return tomlString(k)
		}
	}
	return k
}

func tomlStrings(list []string) string {
	quoted := make([]string, len(list))
	for i, s := range list {
		quoted[i] = tomlString(s)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

var durationType = reflect.TypeFor[config.Duration]()

// writeEffective writes cfg as TOML, every key with the value the daemon
// uses (defaults filled in), so that the output is itself a valid
// configuration. Values of librdkafka settings that look secret are
// replaced as sink.ConfigMap(..., true) does. Keys are found by
// reflection, so that new configuration keys show up without a change
// here.
func writeEffective(w io.Writer, cfg *config.Config, indent string) {
	eff := *cfg
	redacted := sink.ConfigMap(cfg.Sink(), true)
	eff.Kafka.Settings = make(map[string]string, len(cfg.Kafka.Settings))
	for k := range cfg.Kafka.Settings {
		eff.Kafka.Settings[k] = redacted[k]
	}
	eff.Drivers = make([]config.Driver, len(cfg.Drivers))
	for i, d := range cfg.MappingDrivers() {
		e := cfg.Drivers[i]
		if len(e.Events) == 0 {
			for _, k := range parser.AllKinds() {
				e.Events = append(e.Events, k.String())
			}
		}
		prefix, sendFlags := d.KeywordPrefix, config.OnOff(d.SendFlags)
		e.KeywordPrefix, e.SendFlags = &prefix, &sendFlags
		eff.Drivers[i] = e
	}
	writeTable(w, indent, "", reflect.ValueOf(eff))
}

// writeTable writes the fields of struct v: plain keys first, then
// tables, then arrays of tables, as TOML requires.
func writeTable(w io.Writer, indent, name string, v reflect.Value) {
	t := v.Type()
	type sub struct {
		name string
		v    reflect.Value
	}
	var tables, arrays []sub
	for i := range t.NumField() {
		key, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if key == "" || key == "-" {
			continue
		}
		f := v.Field(i)
		full := key
		if name != "" {
			full = name + "." + key
		}
		switch {
		case f.Kind() == reflect.Struct:
			tables = append(tables, sub{full, f})
			continue
		case f.Kind() == reflect.Map:
			tables = append(tables, sub{full, f})
			continue
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.Struct:
			arrays = append(arrays, sub{full, f})
			continue
		}
		if s, ok := tomlValue(f); ok {
			fmt.Fprintf(w, "%s%s = %s\n", indent, key, s)
		} else {
			fmt.Fprintf(w, "%s# %s: not set\n", indent, key)
		}
	}
	for _, s := range tables {
		fmt.Fprintf(w, "%s[%s]\n", indent, s.name)
		if s.v.Kind() == reflect.Map {
			keys := make([]string, 0, s.v.Len())
			for _, k := range s.v.MapKeys() {
				keys = append(keys, k.String())
			}
			slices.Sort(keys)
			for _, k := range keys {
				val, _ := tomlValue(s.v.MapIndex(reflect.ValueOf(k)))
				fmt.Fprintf(w, "%s%s = %s\n", indent, tomlKey(k), val)
			}
			continue
		}
		writeTable(w, indent, s.name, s.v)
	}
	for _, s := range arrays {
		for j := range s.v.Len() {
			fmt.Fprintf(w, "%s[[%s]]\n", indent, s.name)
			writeTable(w, indent, s.name, s.v.Index(j))
		}
	}
}

// tomlValue renders a plain value; ok is false for a nil pointer.
func tomlValue(v reflect.Value) (string, bool) {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return "", false
		}
		v = v.Elem()
	}
	if v.Type() == durationType {
		return tomlString(time.Duration(v.Int()).String()), true
	}
	switch v.Kind() {
	case reflect.String:
		return tomlString(v.String()), true
	case reflect.Bool:
		return strconv.FormatBool(v.Bool()), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10), true
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64), true
	case reflect.Slice:
		list := make([]string, v.Len())
		for i := range list {
			list[i] = fmt.Sprint(v.Index(i).Interface())
		}
		return tomlStrings(list), true
	}
	return tomlString(fmt.Sprint(v.Interface())), true
}
