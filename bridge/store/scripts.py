"""The Lua scripts: every change that touches several keys happens in one of them.

Each script touches keys of one hash slot only (a school's `{s:N}` or the global `{events}`), so all of
them run on Redis Cluster. Redis does not roll a script back when a command fails half-way, so each script
checks everything that could fail before its first write.

`Scripts(redis)` registers them once (`register_script` computes the SHA; redis-py sends EVALSHA and
falls back to loading the script); build it in the app's lifespan and hand it to the stores.
"""

from __future__ import annotations

from typing import Final

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

# KEYS: 1 lease, 2 meta, 3 hashes, 4 records, 5 hold, 6 events stream
# ARGV: 1 token ("" = no lease check), 2 resource, 3 expected version, 4 now, 5 hold marker ("" = none),
#       6 upserts n, 7 deletes n, 8 events n, 9 school flags n, then n*(id, digest, record), n*(id),
#       n*(id, type, head, tail), n*(flag field, value; "" deletes the field)
# Returns {"ok", first_seq, last_seq, new_version} | {"lost_lease", holder} | {"conflict", version}
#       | {"corrupt", detail}
COMMIT: Final = """
local token = ARGV[1]
if token ~= '' then
  local holder = redis.call('GET', KEYS[1])
  if holder ~= token then return {'lost_lease', holder or ''} end
end
local r = ARGV[2]
local version = tonumber(redis.call('HGET', KEYS[2], 'ver:' .. r) or '0')
if version ~= tonumber(ARGV[3]) then return {'conflict', tostring(version)} end
local seq = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
local last = redis.call('XREVRANGE', KEYS[6], '+', '-', 'COUNT', 1)
if last[1] then
  local last_seq = tonumber(string.match(last[1][1], '^(%d+)-'))
  if last_seq ~= seq then return {'corrupt', 'stream ends at ' .. last[1][1] .. ', seq is ' .. seq} end
end
local n_up, n_del, n_ev = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local n_flags = tonumber(ARGV[9])
local i = 10
for _ = 1, n_up do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 2])
  i = i + 3
end
for _ = 1, n_del do
  redis.call('HDEL', KEYS[3], ARGV[i])
  redis.call('HDEL', KEYS[4], ARGV[i])
  i = i + 1
end
if ARGV[5] == '' then redis.call('DEL', KEYS[5]) else redis.call('SET', KEYS[5], ARGV[5]) end
local first = seq + 1
for _ = 1, n_ev do
  seq = seq + 1
  redis.call('XADD', KEYS[6], seq .. '-0',
    'id', ARGV[i], 'type', ARGV[i + 1], 'body', ARGV[i + 2] .. seq .. ARGV[i + 3])
  i = i + 4
end
for _ = 1, n_flags do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[2], ARGV[i])
  else
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
  i = i + 2
end
redis.call('HSET', KEYS[2], 'seq', seq, 'ver:' .. r, version + 1, 'baseline:' .. r, 1,
  'count:' .. r, redis.call('HLEN', KEYS[3]), 'polled:' .. r, ARGV[4])
return {'ok', first, seq, version + 1}
"""

# KEYS: 1 locations, 2 all-index, 3 deliveries, then 3 per event: type index, school index, both
# ARGV: 1 school id, then 4 per event: id, sequence, type, body
# Adds each event once (HSETNX on its location is the guard), so publishing again is harmless.
PUBLISH: Final = """
local school = ARGV[1]
local added = 0
local n = (#ARGV - 1) / 4
for e = 0, n - 1 do
  local a = 2 + e * 4
  local id, seq, etype, body = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  if redis.call('HSETNX', KEYS[1], id, school .. ':' .. seq .. ':' .. etype) == 1 then
    redis.call('ZADD', KEYS[2], 0, id)
    redis.call('ZADD', KEYS[4 + e * 3], 0, id)
    redis.call('ZADD', KEYS[5 + e * 3], 0, id)
    redis.call('ZADD', KEYS[6 + e * 3], 0, id)
    redis.call('XADD', KEYS[3], '*', 'id', id, 'school_id', school, 'sequence', seq, 'type', etype,
      'body', body)
    added = added + 1
  end
end
return added
"""

# KEYS: 1 meta; ARGV: 1 published sequence. Only ever moves the watermark forward.
ADVANCE_PUBLISHED: Final = """
local current = tonumber(redis.call('HGET', KEYS[1], 'published') or '0')
local wanted = tonumber(ARGV[1])
if wanted > current then redis.call('HSET', KEYS[1], 'published', wanted) return wanted end
return current
"""

# KEYS: 1 lease, 2 owner, 3 fence; ARGV: 1 owner, 2 ttl ms. Returns the new token or false.
LEASE_ACQUIRE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[3])
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return token
"""

# KEYS: 1 lease, 2 owner; ARGV: 1 token, 2 ttl ms. Returns 1 if the token still holds the lease.
LEASE_RENEW: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""

# KEYS: 1 lease, 2 owner; ARGV: 1 token. Deletes only the caller's own lease.
LEASE_RELEASE: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""


# KEYS: 1 meta, then 3 per resource: hashes, records, hold; ARGV: 1 cutoff (Unix time), 2 now, then the
# resource names. Purges the record snapshots of a school whose authorisation has been gone (`revoked` or
# `denied` flag) since before the cutoff; the sequence and the event log stay. Returns 1 when it purged.
PURGE_SNAPSHOTS: Final = """
if redis.call('HEXISTS', KEYS[1], 'purged') == 1 then return 0 end
local since = nil
for _, flag in ipairs({'revoked', 'denied'}) do
  local value = tonumber(redis.call('HGET', KEYS[1], flag) or '')
  if value and (since == nil or value < since) then since = value end
end
if since == nil or since > tonumber(ARGV[1]) then return 0 end
for n = 3, #ARGV do
  local r = ARGV[n]
  local k = 2 + (n - 3) * 3
  redis.call('DEL', KEYS[k], KEYS[k + 1], KEYS[k + 2])
  redis.call('HDEL', KEYS[1], 'ver:' .. r, 'baseline:' .. r, 'count:' .. r, 'polled:' .. r)
end
redis.call('HSET', KEYS[1], 'purged', ARGV[2])
return 1
"""


class Scripts:
    """Every script registered once on one client."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.commit: AsyncScript = redis.register_script(COMMIT)
        self.publish: AsyncScript = redis.register_script(PUBLISH)
        self.advance_published: AsyncScript = redis.register_script(ADVANCE_PUBLISHED)
        self.lease_acquire: AsyncScript = redis.register_script(LEASE_ACQUIRE)
        self.lease_renew: AsyncScript = redis.register_script(LEASE_RENEW)
        self.lease_release: AsyncScript = redis.register_script(LEASE_RELEASE)
        self.purge_snapshots: AsyncScript = redis.register_script(PURGE_SNAPSHOTS)
