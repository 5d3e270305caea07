"""Negative protocol input (issue #7, item 5), written against
../shared/PROTOCOL.md.

For every inbound field of every client frame type the contract lists, the
cases below send it with a wrong type, without it (when it is required),
empty, oversize, and (for conversation ids) naming a conversation that does
not exist.  Each case must answer one `error` with the documented code,
tagged with the frame's req_id / client_msg_id when it had one (echoed
exactly as sent), and the connection must stay usable (a ping after it gets
its pong).

Codes:
  bad_request  anything malformed (the default)
  too_large    a field over its own documented limit: more than 1000
               user_ids, a client_msg_id over 64 characters, a JSON frame
               nested deeper than 16 levels; for other oversize values
               (no documented limit) bad_request is accepted as well
  forbidden    a conversation the user is not a member of, or that does not
               exist (existence is not revealed)

A few inputs have no single right answer in the contract (an empty member
list, a missing optional field); their cases accept the normal answer as
well, and say so.

Then: a token for one user never reads or writes another user's
conversations, for every request type; and JSON nesting.

The receipt / typing / presence frames carry a req_id here although the
contract's table does not list one for them: "every frame that carries
req_id ... gets its answer or its error tagged with it".
"""

import json
import time

import pytest

from chatlib import dm_id, unique

T = 10.0            # how long to wait for an answer

# frame types that answer a request (the others are pushed: message,
# receipt, typing)
ANSWERS = ("error", "ack", "pong", "history", "conversations", "sync_done",
           "group", "presence")

MISSING = object()          # the field is left out of the frame


# -- reading ------------------------------------------------------------------

def next_answer(c, timeout=T, what="the answer"):
    """The next frame that answers a request (pushed messages, receipts,
    typing are skipped)."""
    return c.recv_until(lambda o: isinstance(o, dict)
                        and o.get("type") in ANSWERS, timeout, what=what)


def alive(c):
    """A ping after the case gets its pong: the connection still works."""
    rid = unique("alive")
    c.send_json({"type": "ping", "req_id": rid})
    p = c.recv_until(lambda o: o.get("type") == "pong"
                     and o.get("req_id") == rid, T,
                     what="pong after the bad frame")
    assert p["type"] == "pong"


def same_value(a, b):
    """Equal as JSON values, types included (1 is not 1.0 nor True)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# -- per-case context: one fresh user, a partner, lazily a begun direct
#    conversation and a group of which the user is the admin --------------

class Ctx:
    def __init__(self, stack, c, me):
        self.stack = stack
        self.c = c
        self.me = me
        self.peer = unique("negp")
        self.other = unique("nego")
        self.ghost_dm = dm_id(unique("gha"), unique("ghb"))
        self.ghost_group = "g:" + unique("none").replace("_", "")
        self._dm = None
        self._group = None

    @property
    def dm(self):
        """The user's direct conversation with peer, begun (seq 1)."""
        if self._dm is None:
            cmid = unique("setup")
            self.c.send_json({"type": "send", "client_msg_id": cmid,
                              "to": self.peer, "body": "setup"})
            a = self.c.recv_until(lambda o: o.get("client_msg_id") == cmid
                                  and o.get("type") in ("ack", "error"), T,
                                  what="ack of the setup message")
            assert a["type"] == "ack", "setup send failed: %r" % a
            self._dm = a["conversation_id"]
        return self._dm

    @property
    def group(self):
        """A group: the user (admin) and peer."""
        if self._group is None:
            rid = unique("setup")
            self.c.send_json({"type": "create_group", "req_id": rid,
                              "name": "negative", "members": [self.peer]})
            g = self.c.recv_until(lambda o: o.get("req_id") == rid
                                  and o.get("type") in ("group", "error"), T,
                                  what="group of the setup create_group")
            assert g["type"] == "group", "setup create_group failed: %r" % g
            self._group = g["conversation_id"]
        return self._group


def base_frame(ctx, ftype, via=None):
    """A valid frame of ftype (the case then spoils one field)."""
    rid = unique("r")
    if ftype == "send":
        f = {"type": "send", "client_msg_id": unique("m"), "body": "hi"}
        if via == "conversation_id":
            f["conversation_id"] = ctx.dm
        else:
            f["to"] = ctx.peer
        return f
    if ftype == "receipt":
        return {"type": "receipt", "req_id": rid, "conversation_id": ctx.dm,
                "seq": 1, "state": "read"}
    if ftype == "typing":
        return {"type": "typing", "req_id": rid, "conversation_id": ctx.dm,
                "state": "start"}
    if ftype in ("presence_subscribe", "presence_unsubscribe"):
        return {"type": ftype, "req_id": rid, "user_ids": [ctx.peer]}
    if ftype == "presence_set":
        return {"type": ftype, "req_id": rid, "status": "away"}
    if ftype == "sync":
        return {"type": "sync", "req_id": rid, "cursors": {}}
    if ftype == "history":
        return {"type": "history", "req_id": rid,
                "conversation_id": dm_id(ctx.me, ctx.peer)}
    if ftype == "create_group":
        return {"type": "create_group", "req_id": rid, "name": "neg",
                "members": [ctx.peer]}
    if ftype == "add_members":
        return {"type": ftype, "req_id": rid, "conversation_id": ctx.group,
                "user_ids": [ctx.other]}
    if ftype == "remove_members":
        return {"type": ftype, "req_id": rid, "conversation_id": ctx.group,
                "user_ids": [ctx.peer]}
    if ftype == "ping":
        return {"type": "ping", "req_id": rid}
    raise ValueError(ftype)


# -- the cases --------------------------------------------------------------

class Case:
    """One spoiled field.

    value:  the field's value (a callable gets the Ctx), or MISSING
    codes:  the error codes the contract allows
    ok:     answer types that are also right (the input is valid after
            all); "nothing" for a frame type that answers nothing
    """

    def __init__(self, ftype, field, kind, value, codes=("bad_request",),
                 ok=(), via=None, marks=(), extra=None):
        self.ftype = ftype
        self.field = field
        self.kind = kind
        self.value = value
        self.codes = tuple(codes)
        self.ok = tuple(ok)
        self.via = via
        self.marks = tuple(marks)
        self.extra = extra or {}
        self.id = "%s-%s-%s" % (ftype, field, kind)

    def frame(self, ctx):
        f = base_frame(ctx, self.ftype, self.via)
        for k, v in self.extra.items():
            if v is MISSING:
                f.pop(k, None)
            else:
                f[k] = v(ctx) if callable(v) else v
        if self.value is MISSING:
            f.pop(self.field, None)
        else:
            f[self.field] = (self.value(ctx) if callable(self.value)
                             else self.value)
        return f


BAD = ("bad_request",)
BIG = ("too_large", "bad_request")          # oversize, no documented limit
# a conversation id that is malformed: it names no conversation either
BAD_CONV = ("bad_request", "forbidden")
BIG_CONV = ("too_large", "bad_request", "forbidden")
FORBIDDEN = ("forbidden",)


def user_id_list_cases(ftype, field, required=True, empty_ok=(),
                       marks=()):
    """A list of user ids (at most 1000 of [A-Za-z0-9_.@-]{1,64})."""
    out = [
        Case(ftype, field, "string", "alice", marks=marks),
        Case(ftype, field, "number", 7, marks=marks),
        Case(ftype, field, "object", {"alice": 1}, marks=marks),
        Case(ftype, field, "null", None, marks=marks,
             ok=() if required else empty_ok),
        Case(ftype, field, "element_number", [5], marks=marks),
        Case(ftype, field, "element_null", [None], marks=marks),
        Case(ftype, field, "element_list", [["alice"]], marks=marks),
        Case(ftype, field, "element_empty", [""], marks=marks),
        Case(ftype, field, "element_bad_chars", ["bad user"], marks=marks),
        Case(ftype, field, "element_65_chars", ["u" * 65], marks=marks),
        Case(ftype, field, "1001_ids",
             lambda ctx: ["u%d_%s" % (i, ctx.me[-3:]) for i in range(1001)],
             codes=("too_large",), marks=marks),
        # an empty list: the contract neither forbids nor allows it
        Case(ftype, field, "empty", [], ok=empty_ok, marks=marks),
    ]
    if required:
        out.append(Case(ftype, field, "missing", MISSING, marks=marks))
    else:
        out.append(Case(ftype, field, "missing", MISSING, ok=empty_ok,
                        marks=marks))
    return out


def conversation_cases(ftype, via=None, marks=()):
    f = "conversation_id"
    return [
        Case(ftype, f, "number", 42, via=via, marks=marks),
        Case(ftype, f, "list", ["dm:a:b"], via=via, marks=marks),
        Case(ftype, f, "null", None, via=via, marks=marks),
        Case(ftype, f, "missing", MISSING, via=via, marks=marks),
        Case(ftype, f, "empty", "", codes=BAD_CONV, via=via, marks=marks),
        Case(ftype, f, "oversize_161",
             lambda ctx: "g:" + "x" * 159, codes=BIG_CONV, via=via,
             marks=marks),
        Case(ftype, f, "oversize_10000",
             lambda ctx: "g:" + "x" * 9998, codes=BIG_CONV, via=via,
             marks=marks),
        Case(ftype, f, "unknown_dm_of_others", lambda ctx: ctx.ghost_dm,
             codes=FORBIDDEN, via=via, marks=marks),
        Case(ftype, f, "unknown_group", lambda ctx: ctx.ghost_group,
             codes=FORBIDDEN, via=via, marks=marks),
        Case(ftype, f, "unknown_dm_with_self_bad_order",
             lambda ctx: "dm:%s:%s" % tuple(sorted([ctx.me, ctx.peer],
                                                   key=str.encode,
                                                   reverse=True)),
             codes=BAD_CONV, via=via, marks=marks),
        Case(ftype, f, "unknown_no_prefix", lambda ctx: unique("nowhere"),
             codes=FORBIDDEN, via=via, marks=marks),
    ]


def req_id_cases(ftype, marks=()):
    """req_id: any JSON value is echoed; required except for ping."""
    return [
        Case(ftype, "req_id", "missing", MISSING, marks=marks),
        # no documented limit: the normal answer or an error, tagged
        Case(ftype, "req_id", "oversize_4000", "r" * 4000, codes=BIG,
             ok=("*",), marks=marks),
    ]


def state_cases(ftype, field, good, marks=()):
    return [
        Case(ftype, field, "number", 1, marks=marks),
        Case(ftype, field, "list", [good], marks=marks),
        Case(ftype, field, "null", None, marks=marks),
        Case(ftype, field, "missing", MISSING, marks=marks),
        Case(ftype, field, "empty", "", marks=marks),
        Case(ftype, field, "unknown_value", "sideways", marks=marks),
        Case(ftype, field, "wrong_case", good.upper(), marks=marks),
        Case(ftype, field, "oversize", good * 2000, marks=marks),
    ]


def seq_cases(ftype, field, marks=(), ok_negative=()):
    return [
        Case(ftype, field, "string", "5", marks=marks),
        Case(ftype, field, "float", 2.5, marks=marks),
        Case(ftype, field, "bool", True, marks=marks),
        Case(ftype, field, "list", [5], marks=marks),
        Case(ftype, field, "negative", -1, ok=ok_negative, marks=marks),
        Case(ftype, field, "oversize_2e63", 2 ** 63, marks=marks),
    ]


CASES = []

# send ----------------------------------------------------------------------
CASES += [
    Case("send", "client_msg_id", "number", 5),
    Case("send", "client_msg_id", "list", ["x"]),
    Case("send", "client_msg_id", "null", None),
    Case("send", "client_msg_id", "missing", MISSING),
    Case("send", "client_msg_id", "empty", ""),
    Case("send", "client_msg_id", "oversize_65", "c" * 65,
         codes=("too_large",)),
    Case("send", "client_msg_id", "oversize_1000", "c" * 1000,
         codes=("too_large",)),
    Case("send", "client_msg_id", "oversize_65_multibyte", "\u00e9" * 65,
         codes=("too_large",)),
]
CASES += conversation_cases("send", via="conversation_id")
CASES += [
    Case("send", "to", "number", 5),
    Case("send", "to", "list", ["bob"]),
    Case("send", "to", "null", None),
    # without to (and without conversation_id): no target
    Case("send", "to", "missing", MISSING),
    Case("send", "to", "empty", ""),
    Case("send", "to", "oversize_65", "u" * 65, codes=BIG),
    Case("send", "to", "bad_chars", "bad user"),
    Case("send", "to", "colon", "a:b"),
    Case("send", "body", "number", 5),
    Case("send", "body", "object", {"event": "group_created"}),
    Case("send", "body", "list", ["hi"]),
    Case("send", "body", "null", None),
    Case("send", "body", "bool", True),
    Case("send", "body", "missing", MISSING),
    Case("send", "body", "empty", ""),
    # an oversize body is an oversize WebSocket message: closed with 1009
    # (t/test_frames.py), not an error frame
]

# receipt ---------------------------------------------------------------------
CASES += conversation_cases("receipt")
CASES += seq_cases("receipt", "seq") + [
    Case("receipt", "seq", "missing", MISSING),
    Case("receipt", "seq", "null", None),
    # 0 is below every pointer: "an older pointer is ignored" or refused
    Case("receipt", "seq", "zero", 0, ok=("nothing",)),
    # the dm holds seq 1 only: "a seq beyond the conversation's last is
    # bad_request"
    Case("receipt", "seq", "beyond_last", 2),
    Case("receipt", "seq", "beyond_last_far", 10 ** 12),
]
CASES += state_cases("receipt", "state", "read")

# typing ---------------------------------------------------------------------
CASES += conversation_cases("typing")
CASES += state_cases("typing", "state", "start")

# presence (not implemented by the server yet) ------------------------------
for _t in ("presence_subscribe", "presence_unsubscribe"):
    CASES += user_id_list_cases(_t, "user_ids", empty_ok=("nothing",),
                                marks=())
CASES += state_cases("presence_set", "status", "away", marks=())
CASES += [Case("presence_set", "status", "offline", "offline",
               marks=())]

# sync ----------------------------------------------------------------------
CASES += req_id_cases("sync")
CASES += [
    Case("sync", "cursors", "list", [["dm:a:b", 1]]),
    Case("sync", "cursors", "string", "dm:a:b"),
    Case("sync", "cursors", "number", 3),
    # optional: absent, null and empty mean "no cursors"
    Case("sync", "cursors", "missing", MISSING, ok=("conversations",)),
    Case("sync", "cursors", "empty", {}, ok=("conversations",)),
    Case("sync", "cursors", "value_string", lambda ctx: {ctx.dm: "1"}),
    Case("sync", "cursors", "value_float", lambda ctx: {ctx.dm: 1.5}),
    Case("sync", "cursors", "value_negative", lambda ctx: {ctx.dm: -1}),
    Case("sync", "cursors", "value_null", lambda ctx: {ctx.dm: None}),
    Case("sync", "cursors", "value_object", lambda ctx: {ctx.dm: {"s": 1}}),
    Case("sync", "cursors", "value_2e63", lambda ctx: {ctx.dm: 2 ** 63}),
    # no documented limit on the number of cursors: 400 fill a 16k frame
    Case("sync", "cursors", "oversize_400",
         lambda ctx: {"g:%s%04d" % (ctx.me[-8:], i): 1 for i in range(400)},
         codes=BIG, ok=("conversations",)),
]

# history ---------------------------------------------------------------------
CASES += req_id_cases("history")
CASES += conversation_cases("history")
# a negative bound is nonsense, but the page it names (nothing before -1,
# everything after -1) is a possible reading
CASES += seq_cases("history", "before_seq", ok_negative=("history",))
CASES += seq_cases("history", "after_seq", ok_negative=("history",))
CASES += [
    Case("history", "before_seq", "with_after_seq", 5,
         extra={"after_seq": 1}),
    Case("history", "limit", "string", "10"),
    Case("history", "limit", "float", 1.5),
    Case("history", "limit", "bool", True),
    Case("history", "limit", "list", [10]),
    Case("history", "limit", "zero", 0),
    Case("history", "limit", "negative", -1),
    Case("history", "limit", "101", 101),
    Case("history", "limit", "oversize_1e12", 10 ** 12),
]

# create_group ---------------------------------------------------------------
CASES += req_id_cases("create_group")
CASES += [
    Case("create_group", "name", "number", 42),
    Case("create_group", "name", "list", ["x"]),
    Case("create_group", "name", "null", None),
    Case("create_group", "name", "missing", MISSING),
    Case("create_group", "name", "empty", ""),
    Case("create_group", "name", "oversize_129", "n" * 129, codes=BIG),
    Case("create_group", "name", "oversize_129_multibyte", "\u00e9" * 129,
         codes=BIG),
    Case("create_group", "name", "oversize_10000", "n" * 10000, codes=BIG),
]
# members "may be empty": an empty or absent list is a group of one
CASES += user_id_list_cases("create_group", "members", required=False,
                            empty_ok=("group",))

# add_members / remove_members ------------------------------------------------
for _t in ("add_members", "remove_members"):
    CASES += req_id_cases(_t)
    CASES += conversation_cases(_t)
    CASES += [Case(_t, "conversation_id", "direct_conversation",
                   lambda ctx: ctx.dm, codes=("forbidden", "bad_request"))]
    CASES += user_id_list_cases(_t, "user_ids", empty_ok=("group",))

# ping ------------------------------------------------------------------------
CASES += [
    # req_id is optional for ping; any JSON value is echoed
    Case("ping", "req_id", "oversize_4000", "r" * 4000, codes=BIG,
         ok=("pong",)),
]


# -- server gaps found by these cases (xfail, not strict, so that the suite
#    stays green and turns XPASS when they are fixed): none open -------------

GAPS = {}


def _params():
    out = []
    ids = set()
    for c in CASES:
        assert c.id not in ids, "duplicate case id %s" % c.id
        ids.add(c.id)
        marks = list(c.marks)
        if c.id in GAPS:
            marks.append(pytest.mark.xfail(reason=GAPS[c.id], strict=False))
        out.append(pytest.param(c, id=c.id, marks=marks))
    assert set(GAPS) <= ids, set(GAPS) - ids
    return out


def tag_of(frame):
    """(name, value) the answer must carry, or None."""
    if frame.get("type") == "send" and "client_msg_id" in frame:
        return "client_msg_id", frame["client_msg_id"]
    if "req_id" in frame:
        return "req_id", frame["req_id"]
    return None


def _short(v, n=160):
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= n else s[:n] + "...(%d chars)" % len(s)


@pytest.mark.parametrize("case", _params())
def test_bad_field(stack, clients, case):
    me = unique("neg")
    c = clients.add(stack.connect(me))
    ctx = Ctx(stack, c, me)
    frame = case.frame(ctx)
    tag = tag_of(frame)
    sent = _short(frame)
    c.send_json(frame)

    if "nothing" in case.ok:
        # valid input answers nothing: any error must come before the pong
        rid = unique("after")
        c.send_json({"type": "ping", "req_id": rid})
        ans = next_answer(c, what="error or pong after %s" % case.id)
        if ans.get("type") == "pong" and ans.get("req_id") == rid:
            return
    else:
        ans = next_answer(c, what="answer to %s" % case.id)

    if ans["type"] != "error":
        assert "*" in case.ok or ans["type"] in case.ok, (
            "%s: sent %s, expected an error %s, got %s"
            % (case.id, sent, "/".join(case.codes), _short(ans, 400)))
    else:
        assert ans.get("code") in case.codes, (
            "%s: sent %s, expected code %s, got %s"
            % (case.id, sent, "/".join(case.codes), _short(ans, 400)))
        assert isinstance(ans.get("message"), str) and ans["message"], (
            "%s: the error needs a human readable message: %s"
            % (case.id, _short(ans, 400)))
    if tag is not None:
        name, value = tag
        assert name in ans and same_value(ans[name], value), (
            "%s: sent %s; the answer must carry %s=%s exactly, got %s"
            % (case.id, sent, name, _short(value, 60), _short(ans, 400)))
    alive(c)


# -- presence, positive control ---------------------------------------------

def test_presence_valid_frames_accepted(stack, clients):
    """Without this, the presence cases above pass only because the server
    refuses every presence frame."""
    a = unique("pres")
    c = clients.add(stack.connect(a))
    c.send_json({"type": "presence_set", "status": "away"})
    c.send_json({"type": "presence_subscribe", "user_ids": [a]})
    p = next_answer(c)
    assert p.get("type") == "presence" and p.get("user_id") == a, p
    c.send_json({"type": "presence_unsubscribe", "user_ids": [a]})
    alive(c)


# -- client_msg_id: 64 characters, not bytes ----------------------------------

def test_client_msg_id_of_64_multibyte_characters_accepted(stack, clients):
    """1-64 *characters*: 64 two-byte characters are fine."""
    a, b = unique("cm64"), unique("cm64")
    c = clients.add(stack.connect(a))
    cmid = "\u00e9" * 64
    c.send_json({"type": "send", "client_msg_id": cmid, "to": b,
                 "body": "x"})
    ans = next_answer(c)
    assert ans["type"] == "ack" and ans.get("client_msg_id") == cmid, (
        "a client_msg_id of 64 characters (128 bytes) answered %s"
        % _short(ans, 300))


# -- JSON nesting -----------------------------------------------------------

def nested(depth, leaf="x"):
    """A JSON value of `depth` levels of arrays and objects, alternating."""
    v = leaf
    for i in range(depth):
        v = [v] if i % 2 == 0 else {"k": v}
    return v


def test_json_16_levels_accepted(stack, clients):
    c = clients.add(stack.connect(unique("deep")))
    # the frame object is level 1; its req_id 15 more
    rid = nested(15)
    c.send_json({"type": "ping", "req_id": rid})
    p = next_answer(c)
    assert p["type"] == "pong" and same_value(p.get("req_id"), rid), (
        "a frame nested 16 levels deep answered %s" % _short(p, 300))


DEEP = {
    "ping_req_id_17": lambda me: {"type": "ping", "req_id": nested(16)},
    "send_body_17": lambda me: {"type": "send", "client_msg_id": "deep",
                                "to": unique("p"), "body": nested(16)},
    "sync_cursors_17": lambda me: {"type": "sync", "req_id": "deep",
                                   "cursors": nested(16)},
    "create_group_members_17": lambda me: {"type": "create_group",
                                           "req_id": "deep", "name": "d",
                                           "members": nested(16)},
    "unknown_field_17": lambda me: {"type": "ping", "extra": nested(16)},
    "arrays_5000": lambda me: "[" * 5000 + "]" * 5000,
    "objects_2000": lambda me: '{"a":' * 2000 + "1" + "}" * 2000,
    "unclosed_8000": lambda me: "[" * 8000,
}


@pytest.mark.parametrize("kind", sorted(DEEP))
def test_json_deeper_than_16_levels_too_large(stack, clients, kind):
    me = unique("deep")
    c = clients.add(stack.connect(me))
    frame = DEEP[kind](me)
    text = frame if isinstance(frame, str) else json.dumps(frame)
    c.send_text(text)
    ans = next_answer(c)
    assert ans["type"] == "error" and ans.get("code") == "too_large", (
        "%s: sent %s, expected error too_large, got %s"
        % (kind, _short(text, 120), _short(ans, 300)))
    alive(c)


def test_brackets_inside_strings_do_not_count(stack, clients):
    a, b = unique("strdeep"), unique("strdeep")
    c = clients.add(stack.connect(a))
    body = "[{" * 200 + "\\\"[" * 50
    c.send_json({"type": "send", "client_msg_id": "brackets", "to": b,
                 "body": body})
    ans = next_answer(c)
    assert ans["type"] == "ack" and ans.get("client_msg_id") == "brackets", (
        "a string full of brackets is not nesting: %s" % _short(ans, 300))


# -- one user's token never reaches another user's conversations -------------

def count(stack, sql):
    return int(stack.psql(sql))


def q(s):
    return s.replace("'", "''")


def test_token_never_reaches_other_users_conversations(stack, clients):
    a_id, b_id, x_id = unique("own"), unique("own"), unique("intruder")
    a = clients.add(stack.connect(a_id))
    b = clients.add(stack.connect(b_id))
    x = clients.add(stack.connect(x_id))
    dm = dm_id(a_id, b_id)

    # a and b: a direct conversation (seq 1) and a group (seq 1 created,
    # seq 2 a text)
    a.send_json({"type": "send", "client_msg_id": "own1", "to": b_id,
                 "body": "private"})
    ack = a.recv_until(lambda o: o.get("client_msg_id") == "own1"
                       and o.get("type") in ("ack", "error"), T)
    assert ack["type"] == "ack", ack
    a.send_json({"type": "create_group", "req_id": "g", "name": "private",
                 "members": [b_id]})
    g = a.recv_until(lambda o: o.get("req_id") == "g"
                     and o.get("type") in ("group", "error"), T)
    assert g["type"] == "group", g
    grp = g["conversation_id"]
    a.send_json({"type": "send", "client_msg_id": "own2",
                 "conversation_id": grp, "body": "group private"})
    ack2 = a.recv_until(lambda o: o.get("client_msg_id") == "own2"
                        and o.get("type") in ("ack", "error"), T)
    assert ack2["type"] == "ack", ack2

    def stored_state():
        return (count(stack, "select count(*) from messages where "
                      "conversation_id in ('%s','%s')" % (q(dm), q(grp))),
                count(stack, "select count(*) from messages where "
                      "sender_id='%s'" % q(x_id)),
                stack.psql("select string_agg(user_id||':'||role||':'||"
                           "coalesce(removed_seq::text,'-')||':'||"
                           "delivered_seq||':'||read_seq, ',' order by "
                           "user_id) from members where conversation_id in "
                           "('%s','%s')" % (q(dm), q(grp))))

    before = stored_state()
    results = []

    def attempt(label, frame, tag):
        x.send_json(frame)
        ans = next_answer(x, what="answer to the intruder's %s" % label)
        results.append((label, frame, ans))
        ok = (ans.get("type") == "error" and ans.get("code") == "forbidden"
              and tag[0] in ans and same_value(ans[tag[0]], tag[1]))
        return ok

    bad = []
    for conv in (dm, grp):
        kind = "dm" if conv == dm else "group"
        probes = [
            ("send to %s" % kind,
             {"type": "send", "client_msg_id": "in-" + kind,
              "conversation_id": conv, "body": "intrusion"},
             ("client_msg_id", "in-" + kind)),
            ("history of %s" % kind,
             {"type": "history", "req_id": "h-" + kind,
              "conversation_id": conv}, ("req_id", "h-" + kind)),
            ("history after_seq of %s" % kind,
             {"type": "history", "req_id": "ha-" + kind,
              "conversation_id": conv, "after_seq": 0, "limit": 100},
             ("req_id", "ha-" + kind)),
            ("receipt read on %s" % kind,
             {"type": "receipt", "req_id": "r-" + kind,
              "conversation_id": conv, "seq": 1, "state": "read"},
             ("req_id", "r-" + kind)),
            ("receipt delivered on %s" % kind,
             {"type": "receipt", "req_id": "d-" + kind,
              "conversation_id": conv, "seq": 1, "state": "delivered"},
             ("req_id", "d-" + kind)),
            ("typing on %s" % kind,
             {"type": "typing", "req_id": "t-" + kind,
              "conversation_id": conv, "state": "start"},
             ("req_id", "t-" + kind)),
            ("add_members (self) to %s" % kind,
             {"type": "add_members", "req_id": "am-" + kind,
              "conversation_id": conv, "user_ids": [x_id]},
             ("req_id", "am-" + kind)),
            ("remove_members (a member) of %s" % kind,
             {"type": "remove_members", "req_id": "rm-" + kind,
              "conversation_id": conv, "user_ids": [b_id]},
             ("req_id", "rm-" + kind)),
            ("remove_members (self) of %s" % kind,
             {"type": "remove_members", "req_id": "rs-" + kind,
              "conversation_id": conv, "user_ids": [x_id]},
             ("req_id", "rs-" + kind)),
        ]
        for label, frame, tag in probes:
            if not attempt(label, frame, tag):
                bad.append(label)

    # sync: never lists them, never sends their messages, even when asked
    # with cursors naming them
    for rid, cursors in (("s-plain", None), ("s-cursors", {dm: 0, grp: 0})):
        frame = {"type": "sync", "req_id": rid}
        if cursors is not None:
            frame["cursors"] = cursors
        x.send_json(frame)
        convs = x.recv_until(lambda o: o.get("req_id") == rid
                             and o.get("type") in ("conversations", "error"),
                             T)
        leaked = []
        if convs["type"] == "conversations":
            leaked = [it for it in convs.get("items", [])
                      if it.get("conversation_id") in (dm, grp)]
            deadline = time.monotonic() + T
            while True:
                f = x.recv_json(max(0.1, deadline - time.monotonic()))
                if f.get("type") == "sync_done" and f.get("req_id") == rid:
                    break
                if f.get("conversation_id") in (dm, grp):
                    leaked.append(f)
        assert not leaked, "sync %r of an outsider lists or sends the " \
            "others' conversations: %r" % (rid, leaked)

    # nothing reached a or b; nothing stored or changed
    for who, c in (("a", a), ("b", b)):
        frames = c.drain(1.0)
        seen = [f for f in frames if f.get("user_id") == x_id
                or f.get("sender_id") == x_id
                or x_id in json.dumps(f.get("body", ""))]
        assert not seen, "%s saw the intruder's doings: %r" % (who, seen)
    after = stored_state()
    assert after == before, (
        "the intruder changed the store: (messages in the two "
        "conversations, messages by the intruder, members) before %r, "
        "after %r" % (before, after))
    assert before[1] == 0

    assert not bad, "not answered forbidden (tagged): %s" % "; ".join(
        "%s: sent %s, got %s" % (lbl, _short(f), _short(ans, 300))
        for lbl, f, ans in results if lbl in bad)
    alive(x)
    # the owners still read their conversations
    a.send_json({"type": "history", "req_id": "own-h", "conversation_id": grp})
    h = a.recv_until(lambda o: o.get("req_id") == "own-h"
                     and o.get("type") in ("history", "error"), T)
    assert h["type"] == "history" and [m["seq"] for m in h["messages"]] == \
        [1, 2], h
