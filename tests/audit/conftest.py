from __future__ import annotations

from tests.agents.conftest import (  # noqa: F401 - fixtures shared with the agents tests
    _fresh_state,
    charlie_bot,
    charlie_keys,
    keys,
    support_bot,
)
