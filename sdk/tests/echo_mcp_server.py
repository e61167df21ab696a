"""A raw stdio JSON-RPC peer for the bridge's protocol tests (no MCP SDK needed).

Appends every line it receives to ECHO_RECEIVED; answers each request with a result that
echoes it, written with odd spacing so a test can see the bridge relays it byte for byte.
``tools/call`` of ``die`` exits at once without answering; of ``fail``, answers ``isError``.
"""

import json
import os
import sys

received = os.environ["ECHO_RECEIVED"]
for line in sys.stdin:
    with open(received, "a", encoding="utf-8") as log:
        log.write(line if line.endswith("\n") else line + "\n")
    message = json.loads(line)
    if "id" not in message or "method" not in message:
        continue
    params = message.get("params") or {}
    if message["method"] == "tools/call" and params.get("name") == "die":
        sys.exit(3)
    if message["method"] == "tools/call":
        is_error = params.get("name") == "fail"
        result = {"content": [{"type": "text", "text": f"ran {params.get('name')}"}]}
        if is_error:
            result["isError"] = True
    else:
        result = {"echo": message}
    answer = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}, indent=None)
    sys.stdout.write(answer.replace(", ", ",   ") + "\n")
    sys.stdout.flush()
