#!/usr/bin/env python3
"""Measure what push-events.lua costs Dovecot: IMAP STOREs and LMTP deliveries.

Run it against the private instance of scripts/dovecot-test.sh, once started
with PUSH_EVENTS=off (baseline) and once with the script:

    PUSH_EVENTS=off scripts/dovecot-test.sh start /tmp/bench-off
    python3 scripts/bench-dovecot.py
    scripts/dovecot-test.sh stop /tmp/bench-off

It logs in over IMAP, makes sure the mailbox "Bench" holds --messages
messages (appending them once), then times --stores UID STORE commands that
alternately set and clear \\Flagged over those messages (each one changes a
flag, so each one gives FlagsClear and FlagsSet events), one command at a
time as a client would. Then it times --deliveries LMTP deliveries to the
same user over one LMTP connection. It prints

    imap_store_per_sec=...
    lmtp_deliveries_per_sec=...

Wall-clock rates move with everything else the machine does. With --dir DIR
(the instance's directory) it also sums the CPU time that Dovecot's imap and
lmtp processes spent during each phase, from /proc (needs root), and prints

    imap_cpu_ms_per_store=...
    lmtp_cpu_ms_per_delivery=...

which is steadier on a busy machine.

Only the Python standard library is used. Talk only to a test instance: the
deliveries and flag changes are real.
"""

import argparse
import imaplib
import os
import smtplib
import sys
import time


class DovecotCPU:
    """CPU time (user + system) of the imap and lmtp children of a Dovecot
    master, read from /proc. Processes that exit in between are missed."""

    NAMES = ("imap", "lmtp")

    def __init__(self, dovecot_dir):
        self.master = None
        if dovecot_dir:
            with open(os.path.join(dovecot_dir, "run", "master.pid")) as f:
                self.master = int(f.read().strip())
        self.tick = os.sysconf("SC_CLK_TCK")

    def seconds(self):
        """Total CPU seconds of the master's imap and lmtp children."""
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as f:
                    stat = f.read()
            except OSError:
                continue
            # comm is in parentheses and may hold spaces; fields follow it
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == self.master and comm in self.NAMES:
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / self.tick


def message(user, n):
    """A small message, CRLF line ends, numbered so each one differs."""
    return (
        "Message-ID: <bench-%d@example.test>\r\n"
        "Date: Tue, 05 Mar 2024 09:15:00 +0530\r\n"
        "From: Bench <bench@example.test>\r\n"
        "To: %s\r\n"
        "Subject: bench message %d\r\n"
        "\r\n"
        "Body of bench message %d.\r\n" % (n, user, n, n)
    ).encode("ascii")


def check(result, what):
    typ, data = result
    if typ != "OK":
        raise RuntimeError("%s failed: %s %r" % (what, typ, data))
    return data


def prepare_mailbox(imap, user, mailbox, count):
    """Select mailbox (created if missing) holding at least count messages;
    return the UIDs of the first count."""
    imap.create(mailbox)  # NO if it exists: fine
    check(imap.select(mailbox), "SELECT " + mailbox)
    uids = check(imap.uid("SEARCH", "ALL"), "UID SEARCH")[0].split()
    for n in range(len(uids), count):
        check(imap.append(mailbox, None, None, message(user, n)), "APPEND")
    check(imap.select(mailbox), "SELECT " + mailbox)
    uids = check(imap.uid("SEARCH", "ALL"), "UID SEARCH")[0].split()
    return [u.decode() for u in uids[:count]]


def bench_store(imap, uids, stores):
    """Run stores UID STOREs; round r over the messages sets \\Flagged when
    r is even and clears it when r is odd. Returns commands per second and
    the seconds taken."""
    # Start from a known state: no message flagged.
    check(imap.uid("STORE", "1:*", "-FLAGS.SILENT", r"(\Flagged)"), "STORE")
    start = time.perf_counter()
    for i in range(stores):
        op = "+FLAGS" if (i // len(uids)) % 2 == 0 else "-FLAGS"
        check(imap.uid("STORE", uids[i % len(uids)], op, r"(\Flagged)"),
              "UID STORE")
    elapsed = time.perf_counter() - start
    return stores / elapsed, elapsed


def bench_lmtp(args, cpu):
    """Deliver args.deliveries messages over one LMTP connection. Returns
    deliveries per second, the seconds taken and the Dovecot CPU seconds."""
    lmtp = smtplib.LMTP(args.lmtp_host, args.lmtp_port, timeout=args.timeout)
    try:
        code, msg = lmtp.ehlo("bench.example.test")
        if code != 250:
            raise RuntimeError("LHLO failed: %s %r" % (code, msg))
        cpu_start = cpu.seconds() if cpu.master else 0
        start = time.perf_counter()
        for n in range(args.deliveries):
            refused = lmtp.sendmail("bench@example.test", [args.user],
                                    message(args.user, 100000 + n))
            if refused:
                raise RuntimeError("LMTP refused: %r" % (refused,))
        elapsed = time.perf_counter() - start
        cpu_used = cpu.seconds() - cpu_start if cpu.master else 0
    finally:
        try:
            lmtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
    return args.deliveries / elapsed, elapsed, cpu_used


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--imap-host", default="127.0.0.1")
    p.add_argument("--imap-port", type=int, default=10143)
    p.add_argument("--lmtp-host", default="127.0.0.1")
    p.add_argument("--lmtp-port", type=int, default=10024)
    p.add_argument("--user", default="user-a@example.test")
    p.add_argument("--password", default="testpass")
    p.add_argument("--mailbox", default="Bench")
    p.add_argument("--messages", type=int, default=200,
                   help="messages in the mailbox (default: %(default)s)")
    p.add_argument("--stores", type=int, default=3000,
                   help="UID STORE commands to time (default: %(default)s)")
    p.add_argument("--deliveries", type=int, default=500,
                   help="LMTP deliveries to time (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--dir", help="the instance's directory (scripts/"
                   "dovecot-test.sh start DIR): also report Dovecot CPU time")
    args = p.parse_args()
    cpu = DovecotCPU(args.dir)

    imap = imaplib.IMAP4(args.imap_host, args.imap_port, timeout=args.timeout)
    try:
        check(imap.login(args.user, args.password), "LOGIN")
        uids = prepare_mailbox(imap, args.user, args.mailbox, args.messages)
        if not uids:
            raise RuntimeError("no messages in " + args.mailbox)
        cpu_start = cpu.seconds() if cpu.master else 0
        rate, elapsed = bench_store(imap, uids, args.stores)
        cpu_used = cpu.seconds() - cpu_start if cpu.master else 0
        print("imap_stores=%d seconds=%.2f" % (args.stores, elapsed),
              file=sys.stderr)
        print("imap_store_per_sec=%.0f" % rate, flush=True)
        if cpu.master:
            print("imap_cpu_ms_per_store=%.3f" %
                  (cpu_used * 1000 / args.stores), flush=True)
        imap.logout()
    except (imaplib.IMAP4.error, OSError, RuntimeError) as exc:
        print("bench: IMAP: %s" % exc, file=sys.stderr)
        return 1

    try:
        rate, elapsed, cpu_used = bench_lmtp(args, cpu)
    except (smtplib.SMTPException, OSError, RuntimeError) as exc:
        print("bench: LMTP: %s" % exc, file=sys.stderr)
        return 1
    print("lmtp_deliveries=%d seconds=%.2f" % (args.deliveries, elapsed),
          file=sys.stderr)
    print("lmtp_deliveries_per_sec=%.0f" % rate)
    if cpu.master:
        print("lmtp_cpu_ms_per_delivery=%.3f" %
              (cpu_used * 1000 / args.deliveries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
