"""kombu's Redis transport, with one guard that keeps a Celery worker alive through an outage.

Selected by ``CELERY_BROKER_TRANSPORT`` whenever ``REDIS_URL`` is set (settings/base.py);
otherwise it is kombu's own ``redis`` transport, unchanged.

The bug (kombu 5.7.0 with celery 5.7.0 and redis-py 8.1.0, the newest releases; reproduced
by tests/core/test_broker.py): when Redis dies, the worker's consumer closes the broken
connection twice, ``Connection.collect()`` and then ``Connection.close()``
(``celery.worker.consumer.Consumer.on_connection_error_after_connected``). In the first pass
the channel that was blocked in ``BRPOP`` fails to read its reply and raises before it marks
itself closed, and another channel's attempt to put its unacknowledged messages back (with
``acks_late`` they stay unacknowledged while the task runs) raises too, which ends the pass
early; ``collect()`` then detaches the transport from its connection
(``transport.client = None``). In the second pass the first channel closes for real and
tries again to restore its unacknowledged messages: it needs a new Redis connection pool,
whose parameters come from ``transport.client.hostname``, and so it raises
``AttributeError: 'NoneType' object has no attribute 'hostname'``. Celery only forgives
connection errors there, so the worker logs "Unrecoverable error" and exits.

The guard: a channel of a transport that has been detached answers that it has no
connection with a Redis ``ConnectionError``, which kombu and Celery treat as the outage it
is. The worker then reconnects as it does for any broker loss. The messages it could not put
back stay in Redis's unacknowledged set (kombu re-queues them after ``visibility_timeout``
if Redis kept them) and, above all, the database keeps the work: the sweepers re-queue every
due delivery whose wake-up was lost, so nothing waits for them.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise RedisConnectionError(
                "the broker connection of this channel is closed (Redis was lost)"
            )
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel
