"""The README's quick start says what the code does: its password rule is the policy's, and
its blocks are well formed (the literal run is tests/dataplane/test_readme_quickstart.py)."""

from __future__ import annotations

import re

from tests.support.readme import SETTINGS_LINE, quick_start
from tongdao.auth import passwords
from tongdao.auth.passwords import policy_problem


def test_quick_start_states_the_password_rule_the_policy_enforces() -> None:
    text = " ".join(quick_start().section.split())
    rule = text[text.index("**The password rule**") :]
    assert f"at least {passwords.MIN_LENGTH} characters" in rule
    assert f"({passwords.MIN_LENGTH_WITH_SECOND_FACTOR} once the account has TOTP on)" in rule
    assert f"at most {passwords.MAX_LENGTH}" in rule
    listed = len(passwords.blocklist())
    assert f"list of {listed:,}" in rule, f"the blocklist holds {listed:,}"
    for word in passwords.SERVICE_WORDS:
        assert f"`{word}`" in rule
    # Every example the rule gives as refused is refused, and for the reason it is given under.
    examples = re.findall(r"\(`([^`]+)`\)", rule)
    assert len(examples) >= 2
    for example in examples:
        assert policy_problem(example) is not None, example
    # The boundaries: one character short is refused, the minimum of unrelated words is not.
    ok = "plum orchard lantern"
    assert len(ok) >= passwords.MIN_LENGTH and policy_problem(ok) is None
    assert policy_problem(ok[: passwords.MIN_LENGTH - 1]) is not None
    assert policy_problem("pyjama kettle", has_second_factor=True) is None
    assert policy_problem("x" * passwords.MAX_LENGTH + "y") is not None
    # "or the account's e-mail address or its part before the @".
    assert policy_problem("compliance@example.com", context=["compliance@example.com"])
    assert policy_problem("noc@example.com.", context=["noc@example.com"])


def test_quick_start_blocks_are_marked_and_set_every_variable() -> None:
    qs = quick_start()
    assert "make run" in qs.server and SETTINGS_LINE in qs.server
    assert SETTINGS_LINE in qs.steps[0]
    script = "\n".join(qs.steps)
    # The binary by its path, never a bare `tongdao` a fresh machine does not have.
    for line in script.splitlines():
        assert not re.match(r"\s*tongdao\b", line), line
    assert ".venv/bin/tongdao" in script
    # Every variable used is set in an earlier line of the script (or by the shell).
    set_so_far: set[str] = {"PWD"}
    for line in script.splitlines():
        for name in re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", line):
            assert name in set_so_far, f"${name} used before it is set: {line}"
        set_so_far |= set(re.findall(r"\b([A-Z_][A-Z0-9_]*)=", line))
        set_so_far |= set(re.findall(r"\bread -rs -p '[^']*' ([A-Z_]+)", line))
