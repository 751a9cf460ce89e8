"""The shipped dialplan and the hooks agree: a contract test in the datasette spirit.

There is no Asterisk here, so ``dialplan/pbx-crm.conf`` is parsed: every hook it calls is
registered and every registered hook is called, with the arguments in the order the hook reads
them; the variables the hooks set are emptied before the lookup and documented for admins; the
file uses Gosub, hangup handlers and an IP literal as the FastAGI URL; and its AGI calls, played
through the Asterisk emulator against the real FastAGI server and a real database, land on the
right call and deal.
"""

from __future__ import annotations

import ast
import importlib
import importlib.resources
import inspect
import ipaddress
import os
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlmodel import select

from factories import make_contact, make_deal, make_pipeline, make_user
from pbx_crm.funnel import calls
from pbx_crm.telephony import dispatcher
from pbx_crm.agi import HOOKS
from pbx_crm.telephony.ami_client import DEFAULT_EVENTS
from pbx_crm.components import start_fastagi
from pbx_crm.config import Address, Settings
from pbx_crm.db import transaction
from pbx_crm.telephony.fastagi import relay_script_path
from pbx_crm.models import Call
from pbx_crm.simulator.agi import FakeChannel, run_fastagi, run_process_agi

REPO = Path(__file__).resolve().parents[1]
DIALPLAN_DIR = REPO / "dialplan"
CONF = DIALPLAN_DIR / "pbx-crm.conf"
README = DIALPLAN_DIR / "README.md"
MANAGER_EXAMPLE = DIALPLAN_DIR / "manager.conf.example"

RELAY = "pbx-crm.agi"
# The relay starts through "/usr/bin/env python3": find this interpreter first.
PATH = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
FASTAGI_PREFIX = "${CRM_AGI}/"

# What each hook reads, argument by argument, as its docstring and code say (agi/*.py).
HOOK_ARGUMENTS = {
    "incoming": ("the DID", "the linkedid"),
    "answered": ("the inbound uniqueid",),
    "hangup": ("the uniqueid", "DIALSTATUS", "HANGUPCAUSE", "ANSWEREDTIME"),
    "outbound": ("the number dialled", "the linkedid", "the clicked deal"),
}
# What a dialplan expression means, wherever it appears.
EXPRESSIONS = {
    "${CHANNEL(linkedid)}": "the linkedid",
    "${UNIQUEID}": "the uniqueid",
    "${DIALSTATUS}": "DIALSTATUS",
    "${HANGUPCAUSE}": "HANGUPCAUSE",
    "${ANSWEREDTIME}": "ANSWEREDTIME",
    "${CRM_DEAL_ID}": "the clicked deal",
}
# What ARG1 means in each subroutine; the tests below check the callers pass just that.
ARG1 = {
    "pbx-crm-route": "the DID",
    "pbx-crm-answered": "the inbound uniqueid",
    "pbx-crm-outbound": "the number dialled",
}
# How a hook's docstring names the same things, where it differs from the dialplan.
DOCSTRING_EXPRESSIONS = {
    "incoming": {"${EXTEN}": "the DID"},
    "answered": {"${ARG1}": "the inbound uniqueid"},
    "outbound": {"${EXTEN}": "the number dialled"},
}
GOSUB_TARGETS = {"pbx-crm-settings", "pbx-crm-route", "pbx-crm-answered", "pbx-crm-hangup",
                 "pbx-crm-outbound"}
# The applications the file may use; anything else is a typo or a dependency to document.
APPLICATIONS = {"Set", "Gosub", "Return", "Goto", "GotoIf", "AGI", "Dial", "Queue", "NoOp",
                "Hangup"}
ENTRIES = ("pbx-crm-inbound", "pbx-crm-inbound-queue")  # where inbound DIDs are routed


# --- a small reader of extensions.conf ---------------------------------------------------------


@dataclass
class Priority:
    context: str
    exten: str
    index: int  # 0-based position within its extension
    label: str | None
    app: str
    data: str
    line: int

    def __str__(self):
        return f"line {self.line}: [{self.context}] {self.exten} {self.app}({self.data})"


@dataclass
class Dialplan:
    # context -> extension -> priorities in order
    contexts: dict[str, dict[str, list[Priority]]] = field(default_factory=dict)

    def priorities(self, context: str | None = None):
        for name, extensions in self.contexts.items():
            if context is None or name == context:
                for priorities in extensions.values():
                    yield from priorities


LINE = re.compile(
    r"^(?:"
    r"(?P<blank>\s*)"
    r"|\s*;.*"
    r"|\[(?P<context>[A-Za-z0-9_-]+)\]\s*(?:;.*)?"
    r"|exten => (?P<exten>[^,]+),(?P<first>[^,]+),(?P<exten_call>.+)"
    r"|\s*same => (?P<next>n(?:\((?P<label>[a-z_]+)\))?),(?P<same_call>.+)"
    r")$"
)


def split_call(call: str) -> tuple[str, str]:
    """``App(data)`` -> ("App", "data"): the data runs to the last parenthesis, as in Asterisk."""
    match = re.fullmatch(r"(\w+)\((.*)\)", call.strip())
    assert match, f"not an application call: {call!r}"
    return match.group(1), match.group(2)


def split_args(text: str) -> list[str]:
    """Split at the commas outside (), ${} and $[], and not escaped (``\\,``)."""
    args, depth, current, escaped = [], 0, [], False
    for char in text:
        if escaped or char == "\\":
            escaped = not escaped
            current.append(char)
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            args.append("".join(current))
            current = []
        else:
            current.append(char)
    args.append("".join(current))
    return args


def balanced(text: str) -> bool:
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for char in text:
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def parse(text: str) -> Dialplan:
    dialplan, context, exten, errors = Dialplan(), None, None, []
    for number, line in enumerate(text.splitlines(), 1):
        match = LINE.match(line)
        if not match:
            errors.append(f"line {number}: not a comment, blank line, [context], exten or "
                          f"same: {line!r}")
            continue
        if match["context"]:
            context, exten = match["context"], None
            if context in dialplan.contexts:
                errors.append(f"line {number}: [{context}] appears twice")
            dialplan.contexts[context] = {}
            continue
        call = match["exten_call"] or match["same_call"]
        if not call:
            continue
        if context is None:
            errors.append(f"line {number}: an extension outside any context")
            continue
        if match["exten"]:
            exten = match["exten"]
            if match["first"] != "1":
                errors.append(f"line {number}: {exten} starts at priority {match['first']}, not 1")
            if exten in dialplan.contexts[context]:
                errors.append(f"line {number}: {exten} defined twice in [{context}]")
            dialplan.contexts[context][exten] = []
        elif exten is None:
            errors.append(f"line {number}: 'same =>' with no 'exten =>' before it in [{context}]")
            continue
        app, data = split_call(call)
        priorities = dialplan.contexts[context][exten]
        priorities.append(Priority(context, exten, len(priorities), match["label"], app, data,
                                   number))
    assert not errors, "\n".join(errors)
    return dialplan


@pytest.fixture(scope="module")
def dialplan() -> Dialplan:
    return parse(CONF.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class AgiCall:
    priority: Priority
    hook: str
    args: tuple[str, ...]
    relay: bool


def agi_calls(dialplan: Dialplan) -> list[AgiCall]:
    found = []
    for priority in dialplan.priorities():
        if priority.app != "AGI":
            continue
        words = split_args(priority.data)
        if words[0] == RELAY:
            hook, args, relay = words[1], words[2:], True
        else:
            assert words[0].startswith(FASTAGI_PREFIX), \
                f"{priority}: AGI calls go to ${{CRM_AGI}}/<hook> or {RELAY},<hook>"
            hook, args, relay = words[0][len(FASTAGI_PREFIX):], words[1:], False
        # Every hook learns the box the call is on (several PBXes, dialplan/README.md).
        hook, _, query = hook.partition("?")
        assert query == "pbx=${CRM_PBX}", f"{priority}: <hook>?pbx=${{CRM_PBX}}"
        found.append(AgiCall(priority, hook, tuple(args), relay=relay))
    return found


def settings_of(dialplan: Dialplan) -> dict[str, str]:
    values = {}
    for priority in dialplan.priorities("pbx-crm-settings"):
        if priority.app == "Set":
            name, _, value = priority.data.partition("=")
            match = re.fullmatch(r"GLOBAL\((CRM_[A-Z_]+)\)", name)
            assert match, f"{priority}: a setting is Set(GLOBAL(CRM_...)=value)"
            values[match.group(1)] = value
    return values


def label_targets(priority: Priority) -> list[str]:
    """Where a Goto or GotoIf may jump, as labels of the same extension."""
    if priority.app == "Goto":
        words = split_args(priority.data)
        assert len(words) in (1, 2), f"{priority}: Goto(label) or Goto(exten,label) only"
        return [words[-1]]
    if priority.app == "GotoIf":
        _, _, labels = priority.data.rpartition("?")
        return [label for label in labels.split(":") if label]
    return []


def paths_end(priorities: list[Priority]) -> set[str]:
    """Walk every path of one extension; return the applications the paths end with."""
    labels = {p.label: p.index for p in priorities if p.label}
    ends, seen, todo = set(), set(), [0]
    while todo:
        index = todo.pop()
        if index in seen:
            continue
        seen.add(index)
        if index >= len(priorities):
            ends.add("(falls off the end)")
            continue
        priority = priorities[index]
        if priority.app in ("Return", "Hangup"):
            ends.add(priority.app)
            continue
        if priority.app == "Goto" and len(split_args(priority.data)) == 2:
            target_exten = split_args(priority.data)[0]
            assert target_exten == priority.exten, f"{priority}: jumps stay in their extension"
        for label in label_targets(priority):
            assert label in labels, f"{priority}: no label {label!r} in this extension"
            assert labels[label] > index, f"{priority}: jumps go forward (no loops)"
            todo.append(labels[label])
        if priority.app != "Goto":
            todo.append(index + 1)
    unused = {label for label, index in labels.items() if index not in seen}
    assert not unused, f"unreachable labels {unused} in [{priorities[0].context}]"
    return ends


# --- the file ---------------------------------------------------------------------------------


def test_every_line_is_a_comment_a_context_or_a_priority_and_extensions_start_at_1(dialplan):
    # parse() fails on anything else; here, what it read must make sense as a whole.
    assert set(dialplan.contexts) == {*ENTRIES, "pbx-crm-devices"} | GOSUB_TARGETS
    for priority in dialplan.priorities():
        assert priority.app in APPLICATIONS, f"{priority}: an application this file never uses"
        assert balanced(priority.data), f"{priority}: unbalanced (), ${{}} or $[]"
        assert ";" not in priority.data, f"{priority}: Asterisk reads ; as a comment"


def test_the_settings_are_set_as_globals_not_in_a_globals_section():
    """Asterisk reads only the first [globals] section of extensions.conf and its includes: one
    in an included file (or FreePBX's extensions_custom.conf) would be ignored."""
    text = CONF.read_text(encoding="utf-8")
    assert not re.search(r"^\[(general|globals)\]", text, re.MULTILINE)


def test_no_macro_and_no_h_extension_anywhere():
    for path in DIALPLAN_DIR.iterdir():
        if path.suffix in (".conf", ".example"):
            text = path.read_text(encoding="utf-8")
            assert "Macro(" not in text, path
            assert not re.search(r"exten\s*=>\s*h\s*,", text), path


def test_every_gosub_target_ends_each_of_its_paths_in_return(dialplan):
    targets = set()
    for priority in dialplan.priorities():
        targets.update(re.findall(r"Gosub\(([\w-]+),", f"{priority.app}({priority.data})"))
        targets.update(re.findall(r"U\(([\w-]+)\^", priority.data))
        targets.update(re.findall(r"hangup_handler_push\)=([\w-]+),", priority.data))
        if priority.app == "Queue":  # its gosub argument: "context\,ARG1"
            targets.add(split_args(priority.data)[6].partition("\\,")[0])
    # [pbx-crm-outbound] is called from the admin's own outgoing route, not from this file.
    assert targets | {"pbx-crm-outbound"} == GOSUB_TARGETS
    for context in GOSUB_TARGETS:
        for exten, priorities in dialplan.contexts[context].items():
            assert paths_end(priorities) == {"Return"}, f"[{context}] {exten}"


def test_the_inbound_entries_end_each_of_their_paths_with_a_hangup(dialplan):
    for entry in ENTRIES:
        for exten, priorities in dialplan.contexts[entry].items():
            assert paths_end(priorities) == {"Hangup"}, (entry, exten)


def test_the_fastagi_url_is_an_ip_literal_with_a_port(dialplan):
    url = urlsplit(settings_of(dialplan)["CRM_AGI"])
    assert url.scheme == "agi"
    ipaddress.ip_address(url.hostname)  # a host name would be resolved on every call
    assert url.port and not url.path


def test_the_settings_are_the_documented_ones_and_read_only_where_set(dialplan):
    settings = settings_of(dialplan)
    assert set(settings) == {"CRM_AGI", "CRM_AGI_RELAY", "CRM_PBX", "CRM_RING_GROUP",
                             "CRM_RING_GROUP_TIME", "CRM_DEVICE_TECH", "CRM_DEVICE_SUFFIX",
                             "CRM_OWNER_RING_TIME", "CRM_QUEUE", "CRM_QUEUE_TIME"}
    assert settings["CRM_AGI_RELAY"] in ("yes", "no")
    assert settings["CRM_OWNER_RING_TIME"].isdigit()
    assert settings["CRM_RING_GROUP_TIME"].isdigit()
    assert settings["CRM_QUEUE_TIME"].isdigit() and settings["CRM_QUEUE"]
    # Both entries set them before anything reads them.
    for context in ("pbx-crm-route", "pbx-crm-outbound"):
        first = dialplan.contexts[context]["s"][0]
        assert (first.app, first.data) == ("Gosub", "pbx-crm-settings,s,1"), context
    readme = README.read_text(encoding="utf-8")
    for name in settings:
        assert f"| `{name}` |" in readme, f"{name} is not in the settings table of README.md"


# --- the hooks it calls -----------------------------------------------------------------------


def test_every_hook_the_dialplan_calls_is_registered_and_every_registered_hook_is_called(
        dialplan):
    called = {call.hook for call in agi_calls(dialplan)}
    assert called == set(HOOKS)
    # Each hook through FastAGI and through the relay, the same arguments either way.
    for hook in HOOKS:
        fastagi = {c.args for c in agi_calls(dialplan) if c.hook == hook and not c.relay}
        relay = {c.args for c in agi_calls(dialplan) if c.hook == hook and c.relay}
        assert fastagi and fastagi == relay, hook


def test_each_agi_call_passes_what_its_hook_reads_in_the_order_it_reads_it(dialplan):
    for call in agi_calls(dialplan):
        meanings = {**EXPRESSIONS, "${ARG1}": ARG1.get(call.priority.context)}
        passed = tuple(meanings.get(arg, arg) for arg in call.args)
        assert passed == HOOK_ARGUMENTS[call.hook], str(call.priority)


def test_the_argument_table_mirrors_each_hooks_docstring_and_code():
    for name, hook in HOOKS.items():
        module = importlib.import_module(hook.run.__module__)
        # The docstring's AGI(agi://.../<name>,args...) example.
        doc = module.__doc__
        start = doc.index(f"/{name},") + len(f"/{name},")
        depth, end = 1, start
        while depth:
            depth += {"(": 1, ")": -1}.get(doc[end], 0)
            end += 1
        meanings = {**EXPRESSIONS, **DOCSTRING_EXPRESSIONS.get(name, {})}
        documented = tuple(meanings.get(a, a) for a in split_args(doc[start:end - 1]))
        assert documented == HOOK_ARGUMENTS[name], name
        # The code reads exactly that many: arg(request, 1) .. arg(request, N).
        positions = {node.args[1].value for node in ast.walk(ast.parse(inspect.getsource(module)))
                     if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "arg"}
        assert positions == set(range(1, len(HOOK_ARGUMENTS[name]) + 1)), name


def test_arg1_of_each_subroutine_is_what_its_callers_pass(dialplan):
    route_callers = [p for p in dialplan.priorities() if p.app == "Gosub"
                     and p.data.startswith("pbx-crm-route,")]
    assert {(p.context, p.data) for p in route_callers} == {
        ("pbx-crm-inbound", "pbx-crm-route,s,1(${EXTEN})"),
        ("pbx-crm-inbound", "pbx-crm-route,s,1(${FROM_DID})"),
        ("pbx-crm-inbound-queue", "pbx-crm-route,s,1(${EXTEN},queue)"),
        ("pbx-crm-inbound-queue", "pbx-crm-route,s,1(${FROM_DID},queue)")}
    for entry in ENTRIES:
        assert {p.exten for p in route_callers if "${EXTEN}" in p.data
                and p.context == entry} == {"_X.", "_+X."}
    # U() runs on the callee: ARG1 is the inbound channel's UNIQUEID, taken where Dial runs.
    dials = [p for p in dialplan.priorities() if p.app == "Dial"
             and p.context != "pbx-crm-devices"]  # click-to-call: the seller's own phones
    assert dials and all(p.context == "pbx-crm-route" for p in dials)
    assert all(split_args(p.data)[2] == "U(pbx-crm-answered^${UNIQUEID})" for p in dials)
    # Queue's gosub runs on the member's leg too, with the same ARG1.
    (queue,) = [p for p in dialplan.priorities() if p.app == "Queue"]
    assert (queue.context, split_args(queue.data)[6]) == (
        "pbx-crm-route", "pbx-crm-answered\\,${UNIQUEID}")
    # The outgoing route passes the number dialled; the file and the README say how.
    usage = "Gosub(pbx-crm-outbound,s,1(${EXTEN}))"
    assert usage in CONF.read_text(encoding="utf-8")
    assert usage in README.read_text(encoding="utf-8")


def hook_outputs() -> dict[str, set[str]]:
    """The variables each hook returns: the string keys of the dicts its function returns."""
    outputs = {}
    for name, hook in HOOKS.items():
        tree = ast.parse(inspect.getsource(inspect.getmodule(hook.run)))
        keys = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Dict):
                keys.update(k.value for k in node.value.keys if isinstance(k, ast.Constant))
        outputs[name] = keys
    return outputs


def test_the_static_reading_of_the_hooks_finds_what_the_hooks_return():
    outputs = hook_outputs()
    assert outputs["incoming"] == {"CRM_STATUS", "CRM_DEAL_ID", "CRM_CONTACT_ID",
                                   "CRM_CALLER_NAME", "CRM_OWNER_EXTEN", "CRM_OWNER_DIAL"}
    assert all(key.startswith("CRM_") for keys in outputs.values() for key in keys)


def test_the_lookups_outputs_are_emptied_before_it_and_only_those_are_read_after_it(dialplan):
    route = dialplan.contexts["pbx-crm-route"]["s"]
    first_agi = min(p.index for p in route if p.app == "AGI")
    emptied = {p.data[:-1] for p in route[:first_agi]
               if p.app == "Set" and re.fullmatch(r"CRM_[A-Z_]+=", p.data)}
    incoming = hook_outputs()["incoming"] | set(dispatcher.UNAVAILABLE)
    assert incoming <= emptied
    read = {name for p in route[first_agi:] for name in re.findall(r"\$\{(CRM_[A-Z_]+)\}", p.data)}
    assert read <= emptied | set(settings_of(dialplan))


def test_every_variable_a_hook_can_set_is_documented_for_admins(dialplan):
    readme = README.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(CRM_[A-Z_]+)` \|", readme, re.MULTILINE))
    outputs = set().union(*hook_outputs().values()) | set(dispatcher.UNAVAILABLE)
    assert outputs <= documented
    set_by_dialplan = {m for p in dialplan.priorities() if p.app == "Set"
                       for m in re.findall(r"^(CRM_[A-Z_]+)=.", p.data)}
    assert set_by_dialplan <= documented
    for status in (calls.FOUND, calls.NEW, calls.ANONYMOUS, calls.INTERNAL, calls.CONFLICT,
                   calls.UNAVAILABLE):
        assert f"| `{status}` |" in readme, f"CRM_STATUS {status} is not explained"


def test_the_hangup_handler_is_pushed_before_the_dial_and_the_agi(dialplan):
    push = "CHANNEL(hangup_handler_push)=pbx-crm-hangup,s,1"
    for context in ("pbx-crm-route", "pbx-crm-outbound"):
        priorities = dialplan.contexts[context]["s"]
        pushed = [p.index for p in priorities if p.app == "Set" and p.data == push]
        assert len(pushed) == 1, context
        for p in priorities:
            if p.app in ("Dial", "Queue", "AGI"):
                assert pushed[0] < p.index, str(p)


def test_agiexitonhangup_is_set_before_every_agi_on_a_live_channel(dialplan):
    for call in agi_calls(dialplan):
        context = call.priority.context
        if context == "pbx-crm-hangup":
            continue  # a hangup handler runs on a dead channel: there is nothing to exit on
        before = dialplan.contexts[context][call.priority.exten][:call.priority.index]
        assert any(p.app == "Set" and p.data == "AGIEXITONHANGUP=yes" for p in before), \
            str(call.priority)


def test_a_name_from_the_crm_replaces_the_trunks_only_when_it_is_not_empty(dialplan):
    route = dialplan.contexts["pbx-crm-route"]["s"]
    (setting,) = [p for p in route if p.app == "Set" and p.data.startswith("CALLERID(name)=")]
    assert setting.data == "CALLERID(name)=${CRM_CALLER_NAME}"
    guard = route[setting.index - 1]
    # By length, not by string comparison: a name may hold quotes.
    assert guard.app == "GotoIf"
    assert guard.data.startswith("$[${LEN(${CRM_CALLER_NAME})} = 0]?")
    assert label_targets(guard) == [route[setting.index + 1].label]


def test_the_owner_rings_first_only_when_idle_then_the_ring_group(dialplan):
    route = dialplan.contexts["pbx-crm-route"]["s"]
    owner, group = [p for p in route if p.app == "Dial"]
    assert split_args(owner.data)[:2] == ["${CRM_OWNER_DIAL}", "${CRM_OWNER_RING_TIME}"]
    assert split_args(group.data)[:2] == ["${CRM_RING_GROUP}", "${CRM_RING_GROUP_TIME}"]
    checks = " ".join(p.data for p in route[:owner.index] if p.app == "GotoIf")
    assert '"${DEVICE_STATE(${CRM_OWNER_DEVICE})}" != "NOT_INUSE"' in checks
    assert "${LEN(${CRM_OWNER_EXTEN})} = 0" in checks
    after = route[owner.index + 1]
    assert after.app == "GotoIf" and after.data.startswith('$["${DIALSTATUS}" = "ANSWER"]?')
    # The checks jump to the ring group (through the queue variant's switch just before it).
    ring_group = group.label or route[group.index - 1].label
    assert ring_group in {label for p in route[:owner.index] for label in label_targets(p)}


def test_the_queue_variant_rings_the_owner_first_then_the_queue_not_the_ring_group(dialplan):
    route = dialplan.contexts["pbx-crm-route"]["s"]
    owner, group = [p for p in route if p.app == "Dial"]
    (queue,) = [p for p in route if p.app == "Queue"]
    args = split_args(queue.data)
    assert (args[0], args[4], len(args)) == ("${CRM_QUEUE}", "${CRM_QUEUE_TIME}", 7)
    # Where the ring group would ring, the queue entry's calls go to the queue instead...
    switch = route[group.index - 1]
    assert (switch.label, switch.app) == ("ring_group", "GotoIf")
    assert switch.data.startswith('$["${ARG2}" = "queue"]?')
    assert label_targets(switch) == ["queue"]
    # ...with the seller's unanswered DIALSTATUS emptied first, and Queue ends the route.
    cleared = route[queue.index - 1]
    assert (cleared.label, cleared.app, cleared.data) == ("queue", "Set", "DIALSTATUS=")
    assert route[queue.index + 1].app == "Return"
    assert owner.index < switch.index < queue.index
    # Only the queue entry passes "queue"; the settings and the README name the queue.
    entries = {p.context for p in dialplan.priorities() if p.app == "Gosub"
               and p.data.endswith(",queue)")}
    assert entries == {"pbx-crm-inbound-queue"}
    readme = README.read_text(encoding="utf-8")
    assert "[pbx-crm-inbound-queue]" in readme and "setinterfacevar = yes" in readme


def test_the_packaged_files_are_the_ones_in_the_tree():
    packaged = importlib.resources.files("pbx_crm.dialplan")
    for name in ("pbx-crm.conf", "manager.conf.example", "README.md"):
        resource = packaged / name
        assert resource.is_file(), name
        assert resource.read_bytes() == (DIALPLAN_DIR / name).read_bytes(), name


def test_the_ami_user_may_do_what_the_crm_does_and_no_more():
    sections, current = {}, None
    for line in MANAGER_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.split(";", 1)[0].strip()
        if re.fullmatch(r"\[.+\]", line):
            current = sections.setdefault(line[1:-1], [])
        elif line:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    assert set(sections) == {Settings().ami_username}
    (options,) = sections.values()
    values = dict(options)
    assert set(values["read"].split(",")) == set(DEFAULT_EVENTS.split(","))
    assert set(values["write"].split(",")) == {"originate", "reporting"}
    keys = [key for key, _ in options]
    assert values["deny"] == "0.0.0.0/0.0.0.0" and keys.index("deny") < keys.index("permit")
    address, _, mask = values["permit"].partition("/")
    ipaddress.ip_address(address)
    assert mask == "255.255.255.255"
    assert values["secret"]


# --- the dialplan's own AGI calls, played against the real server ----------------------------


def the_call(dialplan: Dialplan, hook: str, relay: bool = False) -> AgiCall:
    (call,) = [c for c in agi_calls(dialplan) if c.hook == hook and c.relay == relay]
    return call


def set_variables(*transcripts) -> set[str]:
    return {command.split()[2] for transcript in transcripts for command in transcript.commands
            if command.upper().startswith("SET VARIABLE ")}


@pytest.fixture
def crm(engine, tmp_path):
    """The FastAGI component on a free port, on the test database."""
    settings = Settings(data_dir=tmp_path, database_url=engine.url.render_as_string(False),
                        fastagi_listen=Address("127.0.0.1", 0), hook_budget_ms=5000)
    running = start_fastagi(settings, engine, replay_interval=3600)
    try:
        yield running
    finally:
        running.stop()


def test_the_dialplans_agi_calls_reach_the_hooks_with_the_right_call_deal_and_seller(
        dialplan, engine, crm):
    """A known caller rings: their seller's extension comes back, that phone answers, the call
    ends; then the seller dials the customer back. Every AGI argument comes from the file."""
    with transaction(engine) as session:
        make_pipeline(session)
        sari = make_user(session, "sari", extensions=["101"])
        contact = make_contact(session, name="Budi Santoso", phones=("+62 812-3456-7890",))
        deal = make_deal(session, sari, title="Website redesign", contact_id=contact.id)
        deal_id, contact_id, sari_id = deal.id, contact.id, sari.user_id
    address = crm.address

    # The inbound leg: a Local test call, whose linkedid is not its own uniqueid.
    inbound = FakeChannel(name="Local/2150001@from-trunk-00000001;2", uniqueid="1795892488.2",
                          linkedid="1795892488.1", callerid="+62 812-3456-7890",
                          calleridname="BUDI MOBILE", context="pbx-crm-route", extension="s",
                          dnid="unknown", variables={"ARG1": "2150001"})
    lookup = the_call(dialplan, "incoming")
    looked_up = run_fastagi(address, "incoming",
                            [inbound.substitute(a) for a in lookup.args], inbound)
    assert looked_up.agistatus == "SUCCESS"
    assert {name: inbound.variables.get(name) for name in hook_outputs()["incoming"]} == {
        "CRM_STATUS": "FOUND", "CRM_DEAL_ID": str(deal_id), "CRM_CONTACT_ID": str(contact_id),
        "CRM_CALLER_NAME": "Budi Santoso", "CRM_OWNER_EXTEN": "101",
        "CRM_OWNER_DIAL": None}  # sari rings on one device: the dialplan dials its own

    # The seller's phone answers: U(pbx-crm-answered^${UNIQUEID}) evaluated on the inbound leg.
    dial = next(p for p in dialplan.priorities("pbx-crm-route") if p.app == "Dial")
    arg1 = inbound.substitute(split_args(dial.data)[2].partition("^")[2][:-1])
    phone = FakeChannel(name="PJSIP/101-00000003", uniqueid="1795892488.3",
                        linkedid="1795892488.1", callerid="2150001", up=True,
                        context="pbx-crm-answered", extension="s", variables={"ARG1": arg1})
    answered = run_fastagi(address, "answered",
                           [phone.substitute(a) for a in the_call(dialplan, "answered").args],
                           phone)

    # The call ends; the hangup handler runs on the dead inbound leg.
    inbound.hangup()
    inbound.variables.update(DIALSTATUS="ANSWER", HANGUPCAUSE="16", ANSWEREDTIME="42")
    hangup = the_call(dialplan, "hangup")
    ended = run_fastagi(address, "hangup", [inbound.substitute(a) for a in hangup.args], inbound)
    assert inbound.variables["CRM_DISPOSITION"] == "answered"

    # The seller calls back, national format, from the outgoing route.
    seller = FakeChannel(name="PJSIP/101-00000010", uniqueid="1795892600.11",
                         linkedid="1795892600.10", callerid="101", calleridname="Sari",
                         context="pbx-crm-outbound", extension="s",
                         variables={"ARG1": "081234567890"})
    dialled = run_fastagi(address, "outbound",
                          [seller.substitute(a) for a in the_call(dialplan, "outbound").args],
                          seller)
    assert seller.variables["CRM_DEAL_ID"] == str(deal_id)
    seller.hangup()
    seller.variables.update(DIALSTATUS="ANSWER", HANGUPCAUSE="16", ANSWEREDTIME="30")
    called_back = run_fastagi(address, "hangup", [seller.substitute(a) for a in hangup.args],
                              seller)

    with transaction(engine, read_only=True) as session:
        inbound_call = calls.find_call(session, "1795892488.2")
        assert (inbound_call.linkedid, inbound_call.did, inbound_call.deal_id) == (
            "1795892488.1", "2150001", deal_id)
        assert (inbound_call.answered_exten, inbound_call.answered_by_id) == ("101", sari_id)
        assert (inbound_call.disposition, inbound_call.hangup_cause) == ("answered", 16)
        outbound_call = calls.find_call(session, "1795892600.11")
        assert (outbound_call.direction, outbound_call.linkedid, outbound_call.deal_id) == (
            "outbound", "1795892600.10", deal_id)
        assert outbound_call.disposition == "answered"
        assert (outbound_call.ended_at - outbound_call.answered_at).total_seconds() == 30
        assert len(session.exec(select(Call)).all()) == 2

    every_variable = set_variables(looked_up, answered, ended, dialled, called_back)
    readme = README.read_text(encoding="utf-8")
    assert every_variable and all(f"| `{name}` |" in readme for name in every_variable)


def test_a_queue_call_runs_the_answered_hook_from_queues_gosub_and_ends_without_dialstatus(
        dialplan, engine, crm):
    """The queue variant: the lookup, then Queue's gosub runs [pbx-crm-answered] on the
    member's leg (the caller in CALLERID, MEMBERINTERFACE set, capture 10); the hangup handler
    finds DIALSTATUS unset, as after every Queue(), and the call is still answered."""
    with transaction(engine) as session:
        make_pipeline(session)
        budi = make_user(session, "budi", extensions=["102"])
        budi_id = budi.user_id
    address = crm.address
    inbound = FakeChannel(name="PJSIP/trunk-00000030", uniqueid="1796587769.30",
                          callerid="+62 812-3456-7890", calleridname="Budi",
                          context="pbx-crm-route", extension="s", dnid="unknown",
                          variables={"ARG1": "2150010", "ARG2": "queue"})
    lookup = the_call(dialplan, "incoming")
    run_fastagi(address, "incoming", [inbound.substitute(a) for a in lookup.args], inbound)
    assert inbound.variables["CRM_STATUS"] == calls.NEW
    assert crm.dispatcher.wait_idle(10)

    # Queue's 7th argument, "context\,ARG1", as Asterisk reads it on the inbound leg.
    (queue,) = [p for p in dialplan.priorities("pbx-crm-route") if p.app == "Queue"]
    context, _, arg1 = split_args(queue.data)[6].partition("\\,")
    assert context == "pbx-crm-answered"
    member = FakeChannel(name="Local/102@phones-00000032;1", uniqueid="1796587769.32",
                         linkedid="1796587769.30", callerid="+62 812-3456-7890",
                         calleridname="Budi", up=True, context=context, extension="s",
                         variables={"ARG1": inbound.substitute(arg1),
                                    "MEMBERINTERFACE": "Local/102@phones",
                                    "MEMBERNAME": "Seller 102"})
    run_fastagi(address, "answered",
                [member.substitute(a) for a in the_call(dialplan, "answered").args], member)

    inbound.hangup()
    inbound.variables.update(HANGUPCAUSE="16", MEMBERINTERFACE="Local/102@phones")
    hangup = the_call(dialplan, "hangup")
    args = [inbound.substitute(a) for a in hangup.args]
    assert args[1] == "" and args[3] == ""  # DIALSTATUS and ANSWEREDTIME: unset after Queue()
    run_fastagi(address, "hangup", args, inbound)
    assert inbound.variables["CRM_DISPOSITION"] == "answered"
    with transaction(engine, read_only=True) as session:
        call = calls.find_call(session, "1796587769.30")
        assert (call.answered_exten, call.answered_by_id, call.disposition) == (
            "102", budi_id, "answered")


def test_the_relay_variant_passes_the_same_arguments_through_the_process_agi(dialplan, engine,
                                                                              crm):
    with transaction(engine) as session:
        make_pipeline(session)
        make_contact(session, name="Budi Santoso", phones=("+62 812-3456-7890",))
    host, port = crm.address
    lookup = the_call(dialplan, "incoming", relay=True)
    channel = FakeChannel(name="PJSIP/trunk-00000020", uniqueid="1795892700.21",
                          linkedid="1795892700.20", callerid="+62 812-3456-7890",
                          context="pbx-crm-route", extension="s", dnid="unknown",
                          variables={"ARG1": "2150001"})
    transcript = run_process_agi(relay_script_path(), lookup.hook,
                                 [channel.substitute(a) for a in lookup.args], channel,
                                 env={"PATH": PATH, "PBX_CRM_FASTAGI": f"{host}:{port}"})
    assert transcript.returncode == 0, transcript.stderr
    # A known contact with no open deal: the CRM opens one, right after the lookup.
    assert channel.variables["CRM_STATUS"] == calls.NEW
    assert crm.dispatcher.wait_idle(10)
    with transaction(engine, read_only=True) as session:
        call = calls.find_call(session, "1795892700.21")
        assert (call.linkedid, call.did) == ("1795892700.20", "2150001")
