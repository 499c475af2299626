"""BoardLink: one command / one reply, error codes, timeouts naming the board, stale replies,
data start / pause, and script execution (validated in full before anything is sent)."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from fake_board import FakeBoard

from agetdaq.protocol.command_table import validate
from agetdaq.protocol.commands import ERR_ILLEGAL_PARAMETER, encode_cframe
from agetdaq.protocol.script import ScriptError, Step, parse_script
from agetdaq.readout.link.board_link import BoardLink
from agetdaq.readout.link.errors import BoardError, BoardInterrupted, BoardTimeout
from agetdaq.readout.link.feminos import FeminosBoard


def link_to(board: FakeBoard, **kw) -> BoardLink:
    host, port = board.address
    kw.setdefault("rcvbuf", 1 << 20)
    kw.setdefault("n_slots", 256)
    return BoardLink(host, port, local=("127.0.0.1", 0), **kw)


def test_command_returns_the_parsed_reply_and_sends_exactly_the_line():
    with FakeBoard() as board, link_to(board) as link:
        reply = link.command("sca  cnt 0x200")  # extra space normalised by the validator
        assert reply is not None and reply.kind == "C" and reply.error == 0
        assert reply.text == "0 Fem(00) sca cnt 0x200 ok\n"
        assert board.received == [b"sca cnt 0x200"]
        assert link.commands_sent == 1


def test_error_code_raises_with_the_card_text():
    replies = {"pul_amp": (ERR_ILLEGAL_PARAMETER, "pul_amp: illegal value")}
    with FakeBoard(replies=replies) as board, link_to(board) as link:
        with pytest.raises(BoardError) as info:
            link.command("pul_amp 0x10")
        assert info.value.code == ERR_ILLEGAL_PARAMETER
        assert "illegal value" in str(info.value) and "illegal value" in info.value.text
        reply = link.command("pul_amp 0x10", check=False)
        assert reply is not None and reply.error == ERR_ILLEGAL_PARAMETER


def test_timeout_names_the_board_address_and_late_reply_is_discarded():
    with FakeBoard(silent={"version"}) as board, link_to(board, timeout=0.2) as link:
        host, port = board.address
        t0 = time.monotonic()
        with pytest.raises(BoardTimeout, match=rf"{host}:{port}"):
            link.command("version")
        assert time.monotonic() - t0 < 3.0
        assert link.timeouts == 1
        # a reply that arrives late must not be taken for the next command's
        board.send_raw(encode_cframe("0 Fem(00) late\n"), link.local_address)
        assert board.wait_for(lambda: link.receiver.counters.replies == 1)
        reply = link.command("state")
        assert reply is not None and "state" in reply.text
        assert link.stale_replies == 1


def test_many_stale_replies_make_one_log_line(caplog):
    with FakeBoard() as board, link_to(board, timeout=1.0) as link:
        for i in range(40):
            board.send_raw(encode_cframe(f"0 Fem(00) late {i} " + "x" * 200 + "\n"),
                           link.local_address)  # fmt: skip
        assert board.wait_for(lambda: link.receiver.counters.replies == 40)
        with caplog.at_level(logging.WARNING, logger="agetdaq.readout.link.board_link"):
            reply = link.command("state")
        assert reply is not None and "state" in reply.text
        assert link.stale_replies == 40
        lines = [r.getMessage() for r in caplog.records if "stale" in r.getMessage()]
        assert len(lines) == 1 and "40 stale replies" in lines[0] and len(lines[0]) < 300


def test_invalid_command_is_refused_before_sending():
    with FakeBoard() as board, link_to(board) as link:
        with pytest.raises(BoardError, match="not sent"):
            link.command("no_such_command 1")
        time.sleep(0.05)
        assert board.received == []


def test_data_request_gets_no_reply_and_returns_at_once():
    with FakeBoard(total_frames=0) as board, link_to(board) as link:
        assert link.command("daq 0x000004 F") is None
        assert board.wait_for(lambda: board.requests == [(4, "F", None)])


def test_start_and_stop_data_pause_the_board():
    with FakeBoard() as board, link_to(board) as link:
        link.start_data()
        assert board.wait_for(lambda: link.receiver.counters.data_frames >= 50)
        # nobody consumes, the ring (256) holds at 50 %: fine, the loop holds credit
        reply = link.stop_data()
        assert reply is not None and "paused" in reply.text
        assert board.requests[-1] == (0xFFFFFF, "F", None)
        assert board.allowance == 0
        time.sleep(0.05)
        sent = board.frames_sent
        time.sleep(0.1)
        assert board.frames_sent == sent
        assert not link.credit.running


def test_close_is_idempotent_and_commands_after_close_fail():
    with FakeBoard() as board:
        link = link_to(board).start()
        link.close()
        link.close()
        with pytest.raises(BoardError, match="closed"):
            link.command("version")


def test_bad_board_address_gives_a_clear_error():
    # a local address this host does not have: fails at bind, no DNS involved
    with pytest.raises(BoardError, match=r"127\.0\.0\.1:1122"):
        BoardLink("127.0.0.1", 1122, local=("192.0.2.1", 0))
    with pytest.raises(ValueError, match="port"):
        BoardLink("127.0.0.1", 0)


def test_only_data_requests_go_without_reply():
    expects_reply = FeminosBoard().expects_reply
    assert not expects_reply(validate("daq 0x000010 F 0x01"))
    assert not expects_reply(validate("daq 0x000000 B"))
    assert expects_reply(validate("daq 0xffffff F"))  # pause: "daq paused"
    assert expects_reply(validate("daq"))  # "send_credits: N U"
    assert expects_reply(validate("version"))


# ---- scripts -------------------------------------------------------------------------------

SCRIPT = """\
# configuration
sca cnt 0x200
credits restore 4 1 F
fem 3
sca wckdiv 4
fem *
LOOP 2
pul_amp $loop
NEXT
sleep 0.01
DAQ -1
sleep 0.05
DAQ 0
"""


def test_script_runs_steps_in_order_with_fem_selection_and_credits():
    with FakeBoard() as board, link_to(board) as link:
        daq_steps: list[Step] = []

        def on_daq(step: Step) -> None:
            daq_steps.append(step)
            link.daq_step(step)

        results = link.scripts.run(SCRIPT, on_daq=on_daq)
        sent_commands = [d for d in board.received if not d.startswith(b"daq")]
        # `sca wckdiv 4` skipped: fem 3 selected, this link is fem 0
        assert sent_commands == [b"sca cnt 0x200", b"pul_amp 0x1", b"pul_amp 0x2"]
        assert [r.step.text for r in results] == ["sca cnt 0x200", "pul_amp 0x1", "pul_amp 0x2"]
        assert all(r.reply is not None and r.reply.error == 0 for r in results)
        assert [s.args["bytes"] for s in daq_steps] == [-1, 0]
        assert link.credit.config.window == 4
        assert board.requests[0] == (4, "F", None)  # the restored window
        assert board.requests[-1] == (0xFFFFFF, "F", None)  # DAQ 0 pauses


def test_script_validation_failure_sends_nothing():
    bad = "sca cnt 0x200\nsca wckdiv 4\nfoo_bar 3\n"
    with FakeBoard() as board, link_to(board) as link:
        with pytest.raises(ScriptError, match=r":3:"):
            link.scripts.run(bad)
        time.sleep(0.05)
        assert board.received == []
        assert link.commands_sent == 0


def test_script_error_reply_stops_the_script():
    replies = {"sca": (-10, "sca: syntax error")}
    with FakeBoard(replies=replies) as board, link_to(board) as link:
        with pytest.raises(BoardError, match="syntax error"):
            link.scripts.run("version\nsca cnt 0x200\nstate\n")
        assert board.received == [b"version", b"sca cnt 0x200"]


def test_script_from_a_file_and_stop_event(tmp_path):
    path = tmp_path / "run.txt"
    path.write_text("version\nsleep 30\nstate\n", encoding="ascii")
    script = parse_script(path)
    stop = threading.Event()
    with FakeBoard() as board, link_to(board) as link:
        timer = threading.Timer(0.1, stop.set)
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(BoardInterrupted, match="sleep 30"):
            link.scripts.run(script, stop=stop)
        assert time.monotonic() - t0 < 10
        timer.cancel()
        assert board.received == [b"version"]


def test_client_steps_go_to_their_callback():
    seen: list[str] = []
    with FakeBoard() as board, link_to(board) as link:
        link.scripts.run("verbose 1\nfopen bin\nversion\n", on_client=lambda s: seen.append(s.text))
        assert seen == ["verbose 1", "fopen bin"]
        assert board.received == [b"version"]


# ---- against the BEC emulator ----------------------------------------------------------------

EMU_RUN = [
    "sca enable 0",
    "aget * mode 0x1",
    "zero_suppress 0",
    "eof_on_eoe 1",
    "trig_rate 1 20",  # 200 Hz
    "trig_enable 0x1",
    "event_limit 0x2",  # 10 events, ~190 datagrams each (no zero suppression)
    "serve_target 1",
    "clr evcnt",
]


def collect_frames(link: BoardLink, quiet_s: float = 0.4, limit_s: float = 20.0) -> list[bytes]:
    """Consume the ring until no data frame came for ``quiet_s``."""
    out: list[bytes] = []
    end = time.monotonic() + limit_s
    calm_since = time.monotonic()
    while time.monotonic() < end:
        buf, lengths, _ = link.receiver.get_batch(256, 0.02)
        if len(lengths):
            out += [bytes(buf[i, : lengths[i]]) for i in range(len(lengths))]
            link.receiver.release(len(lengths))
            calm_since = time.monotonic()
        elif time.monotonic() - calm_since > quiet_s:
            break
    return out


@pytest.fixture
def emulator():
    from agetdaq.readout.simulation.emulator.server import Emulator

    with Emulator(scenario="default", port=0, seed=4, bank=0) as emu:
        yield emu


def emu_link(emu, **kw) -> BoardLink:
    host, port = emu.address
    return BoardLink(host, port, local=("127.0.0.1", 0), rcvbuf=8 << 20, timeout=10.0, **kw)


def test_emulator_data_flows_on_credit_and_pause_stops_it(emulator):
    from agetdaq.protocol.decode import decode_datagrams
    from agetdaq.readout.link.credit import CreditConfig

    with emu_link(emulator, credit=CreditConfig(window=8, threshold=2)) as link:
        for line in EMU_RUN:
            link.command(line)
        link.start_data()
        reply = link.command("sca enable 1")  # replies are matched while data flows
        assert reply is not None and reply.error == 0
        credit_reply = link.command("daq")
        assert credit_reply is not None and "send_credits" in credit_reply.text
        frames = collect_frames(link)
        events, errors = decode_datagrams(frames)
        assert [e.event_count for e in events] == list(range(10))
        assert errors.get("SEQ_GAP", 0) == 0
        c, rx = link.credit.counters, link.receiver.counters
        assert c.lost_replies == 0 and rx.ring_full_drops == 0 and rx.malformed == 0
        # every frame's credit went back (frames arriving together share one request)
        assert c.first_requests == 1 and len(frames) <= c.credit_sent <= len(frames) + 8
        assert link.credit.latency.n > 0
        assert emulator.counters["daq_missing"] == 0
        # pause: no more data even with new events
        paused = link.stop_data()
        assert paused is not None and "paused" in paused.text
        link.command("clr evcnt")
        link.command("sca enable 1")
        time.sleep(0.3)
        assert collect_frames(link, quiet_s=0.2) == []
        link.command("sca enable 0")


def test_emulator_drops_are_seen_as_lost_replies_and_do_not_stall(emulator):
    from agetdaq.readout.link.credit import CreditConfig

    with emu_link(emulator, credit=CreditConfig(window=8, threshold=1)) as link:
        for line in EMU_RUN:
            link.command(line)
        link.command("emu fault drop=0.02 seed=3", validate_line=False)
        link.start_data()
        link.command("sca enable 1")
        frames = collect_frames(link)
        dropped = emulator.counters["fault_drop"]
        link.command("emu fault drop=0", validate_line=False)
        link.stop_data()
    assert dropped > 0
    assert link.credit.counters.lost_replies == dropped
    assert len(frames) + dropped == emulator.counters["datagrams"]


def test_close_pauses_a_board_that_was_sending():
    with FakeBoard() as board:
        with link_to(board) as link:
            link.start_data()
            assert board.wait_for(lambda: link.receiver.counters.data_frames > 0)
        assert board.requests[-1] == (0xFFFFFF, "F", None)
        assert board.allowance == 0
