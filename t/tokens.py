"""Client tokens for the tests, minted by `chatctl token`.

The tests sign nothing themselves: every token, good or forged, comes from
chatctl, whose signing is the module's own (ngx_chat_jwt_sign), so that
nginx's check, chatctl, the benchmark and the tests share one
implementation.

chatctl is $CHATCTL_BIN, else $CHAT_BUILD_DIR/bin/chatctl, else
build/bin/chatctl. A token is one chatctl run (a few milliseconds); the
same request within a few seconds reuses the token it got, for the tests
that open hundreds of connections as one user.
"""

import json
import os
import re
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

ID_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")

# seconds a minted token is reused for, at most 1% of its ttl: an exp a
# test checks is off by so little (a connect loop of one user still needs
# one chatctl run every few seconds)
REUSE = 5.0

_cache = {}
_lock = threading.Lock()


class TokenError(Exception):
    """chatctl refused or failed."""


def chatctl_bin(chatctl=None):
    if chatctl:
        return chatctl
    if os.environ.get("CHATCTL_BIN"):
        return os.environ["CHATCTL_BIN"]
    build = os.environ.get("CHAT_BUILD_DIR") or os.path.join(ROOT, "build")
    return os.path.join(build, "bin", "chatctl")


def chatctl_args(sub, dev=None, exp_delta=3600, alg=None, sign=None,
                 header=None, bad_signature=False, iat=True, **claims):
    """The arguments of `chatctl token` (after "token") for make_token."""
    args = []
    extra = {}
    drop = []
    if sub is None:
        drop.append("sub")
    elif ID_RE.match(sub):
        args.append(sub)
    else:
        extra["sub"] = sub          # chatctl checks only <user>
    if dev is None:
        drop.append("dev")
    elif ID_RE.match(dev):
        args += ["--device", dev]
    else:
        extra["dev"] = dev
    if exp_delta is None:
        drop.append("exp")
    else:
        args += ["--ttl", str(int(exp_delta))]
    if not iat:
        drop.append("iat")
    for k, v in claims.items():
        if v is None:
            drop.append(k)
        else:
            extra[k] = v
    if extra:
        args += ["--claims", json.dumps(extra, separators=(",", ":"))]
    for k in drop:
        args += ["--drop", k]
    if alg is not None:
        args += ["--alg", alg]
    if sign is not None:
        args += ["--sign", sign]
    if header:
        args += ["--header", json.dumps(header, separators=(",", ":"))]
    if bad_signature:
        args.append("--bad-signature")
    return args


def make_token(secret, sub, dev=None, exp_delta=3600, alg=None, sign=None,
               header=None, sign_secret=None, bad_signature=False, iat=True,
               chatctl=None, **claims):
    """A token from `chatctl token`.

    sub None leaves the claim out; dev None leaves `dev` out (nginx then
    says "default"); a sub or dev outside the id alphabet goes in as given;
    exp_delta None leaves `exp` out; iat False leaves `iat` out; alg is the
    header's alg, and the signature's unless sign says (HS256, HS384,
    HS512 or none); sign_secret signs with another secret; bad_signature
    flips the signature's bits; `header` members are set in the header;
    extra keyword claims are set as given (None removes the claim).
    """
    args = chatctl_args(sub, dev=dev, exp_delta=exp_delta, alg=alg,
                        sign=sign, header=header,
                        bad_signature=bad_signature, iat=iat, **claims)
    key = (chatctl_bin(chatctl), sign_secret or secret, tuple(args))
    now = time.monotonic()
    reuse = REUSE
    if exp_delta:
        reuse = min(reuse, abs(exp_delta) / 100.0)
    with _lock:
        hit = _cache.get(key)
    if hit is not None and now - hit[1] < reuse:
        return hit[0]
    token = _run(key[0], key[1], args)
    with _lock:
        if len(_cache) > 10000:
            _cache.clear()
        _cache[key] = (token, now)
    return token


def _run(binary, secret, args):
    if not os.access(binary, os.X_OK):
        raise TokenError("%s is missing: build it with `make build` (or set "
                         "CHATCTL_BIN)" % binary)
    # the secret through the environment, not the command line (ps)
    env = dict(os.environ, CHAT_JWT_SECRET=secret)
    p = subprocess.run([binary, "token"] + args, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    if p.returncode != 0:
        raise TokenError("chatctl token %s: exit %d: %s"
                         % (" ".join(args), p.returncode,
                            p.stderr.decode("utf-8", "replace").strip()))
    token = p.stdout.decode().strip()
    if token.count(".") != 2:
        raise TokenError("chatctl token %s printed %r" % (" ".join(args),
                                                           token))
    return token
