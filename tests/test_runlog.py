"""The run log reads as plain text and holds no character of a key, however a provider library dumps it."""

from __future__ import annotations

import logging
import secrets

from sandbox.runlog import run_log

TAIL = "Zq9x"  # a key's last characters, the ones a "masked" dump keeps; distinctive, so a hit is no accident


def fake_key() -> str:
    return "sk-proj-" + secrets.token_hex(16) + TAIL


def test_run_log_holds_no_colour_codes(tmp_path):
    with run_log(tmp_path) as path:
        logging.getLogger("sandbox").info("\x1b[1;31mepisode failed\x1b[0m: \x1b[2mtimeout\x1b[m")
        logging.getLogger("LiteLLM").warning("\x1b[92m%s\x1b[0m\n", "POST Request Sent from LiteLLM")  # litellm's form
        logging.getLogger("httpx").warning("link \x1b]8;;http://127.0.0.1/\x1b\\here\x1b]8;;\x1b\\ done")
    text = path.read_text()
    assert "\x1b" not in text
    assert "episode failed: timeout" in text
    assert "POST Request Sent from LiteLLM" in text
    assert "link here done" in text


def test_masked_key_dumps_leave_no_character_of_the_key(tmp_path, monkeypatch):
    from litellm.litellm_core_utils.litellm_logging import get_masked_values

    key = fake_key()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a key typed in a header: only its dumps can give it away
    headers = {"Authorization": f"Bearer {key}", "api-key": key, "x-api-key": key, "Content-Type": "application/json"}
    masked = get_masked_values(headers)  # what litellm itself prints in its DEBUG request dumps
    curl = " ".join(f"-H '{k}: {v}'" for k, v in masked.items())
    debug = logging.getLogger("LiteLLM")
    monkeypatch.setenv("SANDBOX_LOG_LEVEL", "DEBUG")
    with run_log(tmp_path) as path:
        debug.debug("headers: %s", masked)
        debug.debug("\x1b[92m%s\x1b[0m\n", f"curl -X POST http://127.0.0.1:8080/v1 \\\n{curl} \\\n-d '{{}}'")
        debug.debug("headers: {'Authorization': 'Bearer sk-****%s'}", TAIL)  # a masker that keeps four
        debug.debug('{"api_key": "sk-proj-********************%s"}', TAIL)
        debug.debug("Incorrect API key provided: sk-proj-****%s.", TAIL)  # a provider's own error text
    text = path.read_text()
    assert "\x1b[" not in text
    assert TAIL not in text and key[-2:] not in text.replace("REDACTED", "")
    for value in masked.values():
        if value != "application/json":
            assert value not in text
    assert "Content-Type: application/json" in text  # headers that hold no secret stay readable
    assert text.count("REDACTED") >= 9
