"""DIR/stack.env, written by t/stack.sh start, read by the tests and tools."""

import os


def read_env_file(path):
    """The KEY=VALUE lines of a stack.env (or of DIR/stack.env) as a dict."""
    if os.path.isdir(path):
        path = os.path.join(path, "stack.env")
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            k, v = line.split("=", 1)
            k = k.strip()
            if k.startswith("export "):
                k = k[len("export "):].strip()
            v = v.strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                v = v[1:-1]
            env[k] = v
    return env
