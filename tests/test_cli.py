"""The `yandexgpt-grpc` command, run as a real subprocess against the emulator."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from tests.conftest import API_KEY, FOLDER
from yandexgpt_grpc import cli
from yandexgpt_grpc.testing import Emulator, Fault, Reply

ANSWER = 'You said: "{}". This is the emulator answering.'
IAM_TOKEN = "t1.secret-iam-token-abcdef"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YC_", "YANDEXGPT_"))}
    env.update(extra)
    return env


def run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "yandexgpt_grpc", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env if env is not None else clean_env(),
        timeout=timeout,
        check=False,
    )
    for secret in (API_KEY, IAM_TOKEN):  # no secret in any output, ever
        assert secret not in proc.stdout and secret not in proc.stderr
    return proc


def conn(emu: Emulator) -> list[str]:
    return ["--endpoint", emu.address, "--insecure", "--api-key", API_KEY, "--folder-id", FOLDER]


def test_positional_text(emu: Emulator) -> None:
    proc = run(*conn(emu), "Hello there")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, ANSWER.format("Hello there") + "\n", "")
    (call,) = emu.calls_for("Completion")
    assert call.header("authorization") == f"Api-Key {API_KEY}"
    assert call.request.model_uri == f"gpt://{FOLDER}/yandexgpt-lite/latest"


def test_complete_subcommand_user_text_system_and_options(emu: Emulator) -> None:
    proc = run(
        "complete",
        *conn(emu),
        "--user-text",
        "Translate me",
        "--system",
        "Translate the text",
        "--model",
        "yandexgpt/rc",
        "--temperature",
        "0.25",
        "--max-tokens",
        "500",
        "--timeout",
        "7",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[Translate the text] " + ANSWER.format("Translate me") + "\n"
    (call,) = emu.calls_for("Completion")
    req = call.request
    assert req.model_uri == f"gpt://{FOLDER}/yandexgpt/rc"
    assert [(m.role, m.text) for m in req.messages] == [("system", "Translate the text"), ("user", "Translate me")]
    assert req.completion_options.temperature.value == 0.25
    assert req.completion_options.max_tokens.value == 500
    assert req.completion_options.stream is False
    # grpc-timeout travels rounded up to a short encoding (7.0095 s was seen), hence the margin.
    assert call.deadline is not None and 5 < call.deadline <= 7.05


def test_stdin_and_environment_fallbacks(emu: Emulator) -> None:
    env = clean_env(YC_IAM_TOKEN=IAM_TOKEN, YC_FOLDER_ID=FOLDER, YANDEXGPT_ENDPOINT=emu.address)
    proc = run("--insecure", stdin="from stdin\n", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ANSWER.format("from stdin") + "\n"
    (call,) = emu.calls_for("Completion")
    assert call.header("authorization") == f"Bearer {IAM_TOKEN}"
    assert call.header("x-folder-id") == FOLDER


def test_iam_token_flag(emu: Emulator) -> None:
    proc = run("--endpoint", emu.address, "--insecure", "--iam-token", IAM_TOKEN, "--folder-id", FOLDER, "hi")
    assert proc.returncode == 0, proc.stderr
    assert emu.calls_for("Completion")[0].header("authorization") == f"Bearer {IAM_TOKEN}"


def test_stream_output_equals_the_final_text(emu: Emulator) -> None:
    emu.enqueue("Completion", Reply(chunks=["Once", " upon", " a time"], final_text="Once upon a time."))
    proc = run(*conn(emu), "--stream", "tell a story")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "Once upon a time.\n", "")
    assert emu.calls_for("Completion")[0].request.completion_options.stream is True


def test_stream_when_the_server_replaces_the_text(emu: Emulator) -> None:
    emu.enqueue("Completion", Reply(chunks=["Some", " bad"], status="CONTENT_FILTER", final_text="[filtered]"))
    proc = run(*conn(emu), "--stream", "x")
    assert proc.returncode == 0
    # A pipe cannot take text back: the replacement starts on a new line and stderr says so.
    assert proc.stdout == "Some bad\n[filtered]\n"
    assert "the server replaced the text (CONTENT_FILTER)" in proc.stderr


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_stream_on_a_terminal_erases_replaced_text(emu: Emulator) -> None:
    emu.enqueue("Completion", Reply(chunks=["Some", " bad"], status="CONTENT_FILTER", final_text="[filtered]"))
    out, err = FakeTty(), io.StringIO()
    code = cli.main([*conn(emu), "--stream", "x"], stdin=io.StringIO(), stdout=out, stderr=err)
    assert code == 0
    assert out.getvalue() == "Some bad\r\x1b[J[filtered]\n"  # cursor back, clear, new text
    assert "CONTENT_FILTER" in err.getvalue()  # the status note


def test_json_prints_the_rest_shape(emu: Emulator) -> None:
    proc = run(*conn(emu), "--json", "hi")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    alt = doc["result"]["alternatives"][0]
    assert alt == {"message": {"role": "assistant", "text": ANSWER.format("hi")}, "status": "ALTERNATIVE_STATUS_FINAL"}
    assert doc["result"]["modelVersion"] == "emulator-1.0"
    assert set(doc["result"]["usage"]) >= {"inputTextTokens", "completionTokens", "totalTokens"}
    assert doc["result"]["usage"]["totalTokens"].isdigit()  # int64 as a string, as REST sends it


def test_stream_json_is_one_object_per_line(emu: Emulator) -> None:
    emu.enqueue("Completion", Reply(chunks=["A", "B"], final_text="ABC"))
    proc = run(*conn(emu), "--stream", "--json", "hi")
    assert proc.returncode == 0, proc.stderr
    docs = [json.loads(line) for line in proc.stdout.splitlines()]
    alts = [d["result"]["alternatives"][0] for d in docs]
    texts = [(a["message"]["text"], a["status"]) for a in alts]
    assert texts == [
        ("A", "ALTERNATIVE_STATUS_PARTIAL"),
        ("AB", "ALTERNATIVE_STATUS_PARTIAL"),
        ("ABC", "ALTERNATIVE_STATUS_FINAL"),
    ]


def test_emulator_flag_needs_no_credentials() -> None:
    proc = run("--emulator", "--stream", "offline")
    assert (proc.returncode, proc.stdout) == (0, ANSWER.format("offline") + "\n")


@pytest.mark.parametrize(
    ("setup", "code", "message"),
    [
        (lambda e: e.fail_next(1, grpc.StatusCode.INVALID_ARGUMENT, "bad temperature"), 4, "INVALID_ARGUMENT: bad"),
        (lambda e: e.fail_next(9, grpc.StatusCode.UNAVAILABLE, pushback_ms=1), 5, "UNAVAILABLE: emulator"),
        (lambda e: e.fail_next(1, grpc.StatusCode.PERMISSION_DENIED, "no access"), 3, "PERMISSION_DENIED: no"),
        (lambda e: e.fail_next(4, grpc.StatusCode.INTERNAL, pushback_ms=1), 1, "INTERNAL: emulator"),
    ],
    ids=["invalid-argument", "unavailable", "permission", "other"],
)
def test_exit_codes_by_error_class(emu: Emulator, setup: Callable[[Emulator], Any], code: int, message: str) -> None:
    setup(emu)
    proc = run(*conn(emu), "hi")
    assert proc.returncode == code
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("yandexgpt-grpc: error: " + message), proc.stderr
    assert "Traceback" not in proc.stderr


def test_auth_failure_exits_3_without_leaking_the_key(yandexgpt_emulator_factory: Callable[..., Emulator]) -> None:
    emu = yandexgpt_emulator_factory(api_keys=["the-only-good-key"])
    proc = run(*conn(emu), "hi")
    assert proc.returncode == 3
    assert proc.stderr.startswith("yandexgpt-grpc: error: UNAUTHENTICATED: the API key is not valid")
    debug = run(*conn(emu), "--debug", "hi")  # tracebacks and logs on request, still no secret
    assert debug.returncode == 3
    assert "Traceback" in debug.stderr


def test_no_credentials_exit_3() -> None:
    proc = run("--endpoint", "127.0.0.1:1", "--insecure", "hi")
    assert proc.returncode == 3
    assert proc.stderr == (
        "yandexgpt-grpc: error: no credentials: pass --api-key or --iam-token, set YC_API_KEY, YC_IAM_TOKEN or "
        "YC_SERVICE_ACCOUNT_KEY_FILE, or try --emulator\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--temperature", "3", "hi"], "argument --temperature: must be in [0, 1], got '3'"),
        (["--max-tokens", "0", "hi"], "argument --max-tokens: must be at least 1, got '0'"),
        (["--user-text", "a", "b"], "either as an argument or with --user-text"),
        (["   "], "the text is empty"),
        (["--endpoint", "example.com:443", "hi"], "contradict"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    proc = run("--emulator", *args)
    assert proc.returncode == 2
    assert message in proc.stderr.splitlines()[-1]
    assert "Traceback" not in proc.stderr
    assert "max_tokens" not in proc.stderr  # flags, not Python parameters


def test_plaintext_to_a_remote_host_is_refused() -> None:
    proc = run("--endpoint", "example.com:443", "--insecure", "--api-key", API_KEY, "--folder-id", FOLDER, "hi")
    assert proc.returncode == 2
    assert "allowed only to loopback" in proc.stderr


def test_help_documents_the_exit_codes() -> None:
    for args in (["--help"], ["complete", "--help"], ["batch", "--help"]):
        proc = run(*args)
        assert proc.returncode == 0
        assert "130  interrupted (Ctrl-C)" in proc.stdout
        assert "3    authentication" in proc.stdout


def test_ctrl_c_cancels_the_rpc_and_exits_130(emu: Emulator) -> None:
    emu.enqueue("Completion", Fault(stall=True, after=1, chunks=["Thinking"]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "yandexgpt_grpc", *conn(emu), "--stream", "stall please"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert emu.wait_for(lambda: emu.calls_for("Completion")[0].responses_sent == 1, timeout=20)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert out == "Thinking"  # what had arrived was shown
    assert err == "yandexgpt-grpc: interrupted\n"
    call = emu.calls_for("Completion")[0]
    assert emu.wait_for(lambda: call.cancelled, timeout=5), "the server never saw the cancel"
    assert call.code == grpc.StatusCode.CANCELLED


def test_tokenize_prints_tokens_and_count(emu: Emulator) -> None:
    proc = run("tokenize", *conn(emu), "To be, or not")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split("\t")[1] for line in lines[:-1]] == ['"To"', '" be"', '","', '" or"', '" not"']
    assert lines[-1] == "5 tokens"
    doc = json.loads(run("tokenize", *conn(emu), "--json", "To be").stdout)
    assert [t["text"] for t in doc["tokens"]] == ["To", " be"]
    whole = run("tokenize", *conn(emu), "--system", "Be brief", "To be")
    assert whole.stdout.splitlines()[-1] == "4 tokens"  # system + user text


def test_submit_then_operation(emu: Emulator) -> None:
    proc = run("submit", *conn(emu), "later please")
    assert proc.returncode == 0, proc.stderr
    op_id = proc.stdout.strip()
    assert op_id in emu.operations
    pending = run("operation", *conn(emu), op_id)  # the emulator finishes on the second poll
    assert (pending.returncode, pending.stdout) == (6, "")
    assert "still running" in pending.stderr
    done = run("operation", *conn(emu), op_id, "--wait", "--poll-interval", "0.01")
    assert (done.returncode, done.stdout) == (0, ANSWER.format("later please") + "\n")
    waited = run("submit", *conn(emu), "--wait", "--poll-interval", "0.01", "--json", "now")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["result"]["alternatives"][0]["message"]["text"] == ANSWER.format("now")


def test_unknown_operation_exits_4(emu: Emulator) -> None:
    proc = run("operation", *conn(emu), "no-such-operation")
    assert proc.returncode == 4
    assert proc.stderr.startswith("yandexgpt-grpc: error: NOT_FOUND")


# -- flags as the official docs' samples spell them (issue 16 item 1) ------------------------


def test_underscore_flags_of_the_docs_sample(emu: Emulator) -> None:
    proc = run(
        "--endpoint", emu.address, "--insecure", "--iam_token", IAM_TOKEN, "--folder_id", FOLDER, "--user_text", "Hi"
    )  # fmt: skip
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, ANSWER.format("Hi") + "\n", "")
    (call,) = emu.calls_for("Completion")
    assert call.header("authorization") == f"Bearer {IAM_TOKEN}"
    assert call.header("x-folder-id") == FOLDER
    proc = run(
        "tokenize", "--endpoint", emu.address, "--insecure", f"--api_key={API_KEY}", f"--folder_id={FOLDER}", "a"
    )
    assert proc.returncode == 0, proc.stderr


def _required(command: str) -> list[str]:
    return {"operation": ["op-1"], "batch": ["in.jsonl", "out.jsonl"]}.get(command, [])


@pytest.mark.parametrize("command", ["complete", "tokenize", "submit", "operation", "batch"])
def test_every_hyphenated_flag_has_an_underscore_alias(command: str) -> None:
    from yandexgpt_grpc._cli._args import build_parser, parse

    flags = [
        (action, name)
        for action in build_parser(command)._actions
        for name in action.option_strings
        if name.startswith("--") and "-" in name[2:]
    ]
    assert len(flags) >= 4
    for action, name in flags:
        value = [] if action.nargs == 0 else ["2" if name == "--poll-interval" else "1"]
        base = vars(parse([command, *_required(command)]))
        dashed = vars(parse([command, *_required(command), name, *value]))
        underscored = vars(parse([command, *_required(command), "--" + name[2:].replace("-", "_"), *value]))
        for ns in (base, dashed, underscored):
            del ns["parser"]
        assert dashed != base, name  # the flag did something...
        assert underscored == dashed, name  # ...and its underscore spelling the same


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["--iam_tokn", "tok", "--folder_id", "b1g", "--user_text", "Hi"], "did you mean --iam-token?"),
        (["--foldr-id", "b1g", "Hello"], "did you mean --folder-id?"),
        (["--max_token", "5", "Hello"], "did you mean --max-tokens?"),
        (["tokenize", "--sytem", "x", "Hello"], "did you mean --system?"),
        (["--emulator", "Hello", "world"], "unrecognized arguments: world (quote a text of several words)"),
    ],
)
def test_a_misspelt_flag_gets_the_command_usage_and_a_hint(emu: Emulator, args: list[str], hint: str) -> None:
    proc = run(*args, env=clean_env(YANDEXGPT_ENDPOINT=emu.address, YC_API_KEY=API_KEY))
    assert proc.returncode == 2
    assert proc.stdout == ""
    usage = "usage: yandexgpt-grpc tokenize" if args[0] == "tokenize" else "usage: yandexgpt-grpc [complete]"
    assert proc.stderr.startswith(usage)
    assert proc.stderr.rstrip().endswith(hint), proc.stderr
    assert emu.calls == []  # the flag's value was never sent as the prompt


# -- messages in command-line words (item 2) ---------------------------------------------------


def test_short_model_without_a_folder_names_the_flag_and_the_variable(emu: Emulator) -> None:
    proc = run("--endpoint", emu.address, "--insecure", "--api-key", API_KEY, "hi")
    assert proc.returncode == 2
    assert "pass --folder-id or set YC_FOLDER_ID" in proc.stderr
    assert "folder_id" not in proc.stderr
    assert emu.calls == []


def test_two_credentials_name_the_flags(emu: Emulator) -> None:
    proc = run("--endpoint", emu.address, "--insecure", "--api-key", API_KEY, "--iam-token", IAM_TOKEN, "hi")
    assert proc.returncode == 2
    assert proc.stderr == "yandexgpt-grpc: error: pass only one of --api-key and --iam-token\n"


def test_plaintext_refusal_names_the_flag() -> None:
    proc = run("--endpoint", "example.com:443", "--insecure", "--api-key", API_KEY, "--folder-id", FOLDER, "hi")
    assert "--insecure sends credentials in plaintext" in proc.stderr
    assert "insecure=" not in proc.stderr


@pytest.mark.parametrize(
    ("library", "cli_words"),
    [
        (
            "model 'yandexgpt-lite' is a short name, which needs a folder: pass folder_id= or set YC_FOLDER_ID "
            "(or give the full URI gpt://<folder>/yandexgpt-lite/latest)",
            "model 'yandexgpt-lite' is a short name, which needs a folder: pass --folder-id or set YC_FOLDER_ID "
            "(or give the full URI gpt://<folder>/yandexgpt-lite/latest)",
        ),
        ("max_tokens must be a positive int, got 0", "--max-tokens must be a positive int, got 0"),
        ("temperature must be in [0, 1], got 3", "--temperature must be in [0, 1], got 3"),
        (
            "messages is empty: give at least one message, e.g. Message.user('Hello')",
            "no text to send: give it as an argument, with --user-text, or on stdin",
        ),
        ("no model: pass model= (--model) or give every input line a 'model'", "no model: pass --model or give"),
        ("poll_interval must be a positive number of seconds, got 0", "--poll-interval must be a positive"),
        ("UNAVAILABLE: something else", "UNAVAILABLE: something else"),
    ],
)
def test_library_messages_in_cli_words(library: str, cli_words: str) -> None:
    from yandexgpt_grpc._cli._wording import cli_wording

    assert cli_wording(library).startswith(cli_words)


# -- a prompt over the size limit (item 3) ------------------------------------------------------


@pytest.mark.parametrize("command", ["complete", "tokenize", "submit"])
def test_a_prompt_over_the_servers_limit_exits_4(emu: Emulator, command: str) -> None:
    prompt = "x" * (5 * 2**20)  # the emulator keeps grpc's default 4 MiB receive limit, as servers do
    proc = run(command, *conn(emu), "-", stdin=prompt)
    assert proc.returncode == 4
    assert proc.stderr == "yandexgpt-grpc: error: the prompt is too large (5.0 MB; the limit is 4 MB)\n"


def test_too_large_wording() -> None:
    from yandexgpt_grpc._cli._wording import too_large

    details = "Received message larger than max (5242932 vs. 4194304)"
    assert too_large(details, 5 * 2**20) == "the prompt is too large (5.0 MB; the limit is 4 MB)"
    assert too_large(details, 100) == "the answer is too large (5.0 MB; the limit is 4 MB)"
    assert too_large("quota exceeded", 100) is None


# -- stdin, help and the default command (item 7) -----------------------------------------------


def test_help_shows_the_complete_flags_and_the_commands() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: yandexgpt-grpc [complete]")
    for flag in ("--user-text", "--system", "--model", "--max-tokens", "--stream", "--json", "--api-key"):
        assert flag in proc.stdout
    for command in ("tokenize", "submit", "operation", "batch"):
        assert f"\n  {command} " in proc.stdout


def test_dash_means_stdin(emu: Emulator) -> None:
    proc = run(*conn(emu), "-", stdin="from a pipe\n")
    assert (proc.returncode, proc.stdout) == (0, ANSWER.format("from a pipe") + "\n")
    proc = run("tokenize", *conn(emu), "-", stdin="To be")
    assert proc.stdout.splitlines()[-1] == "2 tokens"


def _run_bytes(args: list[str | bytes], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "yandexgpt_grpc", *args],
        input=stdin,
        capture_output=True,
        env=clean_env(),
        timeout=30,
        check=False,
    )


def test_non_utf8_stdin_is_a_usage_error(emu: Emulator) -> None:
    proc = _run_bytes(conn(emu), b"caf\xe9 au lait")
    assert proc.returncode == 2
    assert proc.stderr == b"yandexgpt-grpc: error: stdin is not valid UTF-8 (byte 0xe9 at offset 3)\n"
    assert emu.calls == []


def test_non_utf8_argument_is_a_usage_error(emu: Emulator) -> None:
    proc = _run_bytes([*conn(emu), b"na\xefve"], b"")
    assert proc.returncode == 2
    assert proc.stderr == b"yandexgpt-grpc: error: the text argument is not valid UTF-8 (byte 0xef at offset 2)\n"


def test_utf8_stdin_with_a_byte_order_mark(emu: Emulator) -> None:
    proc = _run_bytes(conn(emu), "\ufeffcafé".encode())
    assert proc.returncode == 0
    assert proc.stdout.decode() == ANSWER.format("café") + "\n"


# -- messages after streamed text, a closed pipe (items 4 and 5) --------------------------------


def test_error_after_streamed_text_into_one_file_starts_on_a_new_line(emu: Emulator) -> None:
    emu.enqueue("Completion", Fault(grpc.StatusCode.INTERNAL, "boom", after=2, chunks=["One", " two"]))
    proc = subprocess.run(
        [sys.executable, "-m", "yandexgpt_grpc", *conn(emu), "--stream", "x"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # 2>&1
        text=True,
        env=clean_env(),
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout.startswith("One two\nyandexgpt-grpc: error: INTERNAL: boom")


def test_error_after_streamed_text_into_a_pipe_keeps_the_text_as_sent(emu: Emulator) -> None:
    emu.enqueue("Completion", Fault(grpc.StatusCode.INTERNAL, "boom", after=2, chunks=["One", " two"]))
    proc = run(*conn(emu), "--stream", "x")
    assert (proc.returncode, proc.stdout) == (1, "One two")
    assert proc.stderr.startswith("yandexgpt-grpc: error: INTERNAL: boom")


def _into_a_closed_pipe(args: list[str]) -> subprocess.CompletedProcess[str]:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first byte, as after `| head -c0`
    try:
        return subprocess.run(
            [sys.executable, "-m", "yandexgpt_grpc", *args],
            stdin=subprocess.DEVNULL,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
            timeout=30,
            check=False,
        )
    finally:
        os.close(write)


@pytest.mark.parametrize("mode", [[], ["--stream"], ["--json"], ["--stream", "--json"]])
def test_a_closed_pipe_exits_141_quietly(emu: Emulator, mode: list[str]) -> None:
    emu.enqueue("Completion", Reply(chunks=["One", " two"], final_text="One two three"))
    proc = _into_a_closed_pipe([*conn(emu), *mode, "x"])
    assert (proc.returncode, proc.stderr) == (141, "")


def test_head_reads_two_lines_and_the_pipeline_ends(emu: Emulator) -> None:
    text = "".join(f"line {i}\n" for i in range(2000))
    emu.enqueue("Completion", Reply(chunks=[text[i : i + 500] for i in range(0, len(text), 500)], final_text=text))
    cmd = " ".join([sys.executable, "-m", "yandexgpt_grpc", *conn(emu), "--stream", "x", "| head -2"])
    proc = subprocess.run(
        ["bash", "-c", "set -o pipefail; " + cmd + "; echo status ${PIPESTATUS[0]}"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=30,
        check=False,
    )
    assert proc.stdout.splitlines()[:2] == ["line 0", "line 1"]
    assert proc.stdout.splitlines()[2] in ("status 0", "status 141")  # 0 if all fit in the pipe first
    assert proc.stderr == ""


# -- grpc's own log lines (item 9) --------------------------------------------------------------


def test_grpc_core_logs_only_with_debug(emu: Emulator) -> None:
    args = ["--endpoint", emu.address, "--api-key", API_KEY, "--folder-id", FOLDER, "--timeout", "1", "hi"]
    proc = run(*args)  # TLS to a plaintext server: each handshake fails, and grpc logs about it
    assert proc.returncode == 5
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("yandexgpt-grpc: error: "), proc.stderr
    debug = run(*args, "--debug")
    assert "ssl_transport_security" in debug.stderr  # the test would see the lines if they came
    own = run(*args, env=clean_env(GRPC_VERBOSITY="INFO"))  # a user's own setting is theirs
    assert "ssl_transport_security" in own.stderr


def test_ctrl_c_during_a_unary_call_cancels_it(emu: Emulator) -> None:
    """One-shot calls run on the blocking Client: Ctrl-C must still reach the wire as a cancel."""
    emu.enqueue("Completion", Fault(stall=True))
    proc = subprocess.Popen(
        [sys.executable, "-m", "yandexgpt_grpc", *conn(emu), "stall please"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert emu.wait_for(lambda: len(emu.calls_for("Completion")) == 1, timeout=20)
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out, err) == (130, "", "yandexgpt-grpc: interrupted\n")
    call = emu.calls_for("Completion")[0]
    assert emu.wait_for(lambda: call.cancelled, timeout=5), "the server never saw the cancel"
