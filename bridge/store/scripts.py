"""The Lua scripts, all of them: every change that touches several keys happens in one of them.

The rule: every script the bridge runs is in this module and registered once in `Scripts`; its owner
calls `scripts.<name>(keys=..., args=...)` with key names from `Keys`. A field name a script spells is
written `$name` in its text and filled in from store/keys.py when this module loads (`_lua`), so keys.py
stays the one place that names fields.

Each script touches keys of one hash slot only (a school's `{s:N}`, a subscription's `{sub:<id>}`, or one
global slot), so all of them run on Redis Cluster. Redis does not roll a script back when a command fails
half-way, so each script checks everything that could fail before its first write.

`Scripts(redis)` registers them once (`register_script` computes the SHA; redis-py sends EVALSHA and
falls back to loading the script); `Services.build` (bridge/app.py) builds the one instance and hands it
to every store.
"""

from __future__ import annotations

from string import Template
from typing import Final

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from bridge.store.keys import (
    META_BASELINE,
    META_BODIES,
    META_COUNT,
    META_DENIED,
    META_HANDON,
    META_POLLED,
    META_PUBLISHED,
    META_PURGED,
    META_RAWS,
    META_REVOKED,
    META_SEQ,
    META_VERSION,
    SUBSCRIPTION_FAILING_SINCE,
)

_FIELDS: Final = {
    "seq": META_SEQ,
    "published": META_PUBLISHED,
    "ver": META_VERSION,
    "baseline": META_BASELINE,
    "handon": META_HANDON,
    "bodies": META_BODIES,
    "count": META_COUNT,
    "polled": META_POLLED,
    "denied": META_DENIED,
    "revoked": META_REVOKED,
    "purged": META_PURGED,
    "raws": META_RAWS,
    "failing_since": SUBSCRIPTION_FAILING_SINCE,
}


# Reads `n` fields written by `codec.packed` (their lengths, 4 bytes each, big-endian, then the fields)
# from position `pos` of `s`; returns the position after them, then the fields. Plain Lua: Redis's
# `struct` would do, but the embedded store of `memory://` has no `struct`.
_FIELDS_LUA: Final = """
local function fields(s, pos, n)
  local b = {string.byte(s, pos, pos + 4 * n - 1)}
  local out = {}
  pos = pos + 4 * n
  for k = 1, n do
    local j = 4 * (k - 1)
    local len = ((b[j + 1] * 256 + b[j + 2]) * 256 + b[j + 3]) * 256 + b[j + 4]
    out[k] = string.sub(s, pos, pos + len - 1)
    pos = pos + len
  end
  return pos, unpack(out, 1, n)
end
"""


def _lua(source: str) -> str:
    """`source` with `$seq`, `$ver`, ... replaced by the field names of store/keys.py (Lua has no `$`)."""
    return Template(source).substitute(_FIELDS)


# --- a school's slot: snapshots, events, leases (sync/snapshot.py, events/outbox.py, sync/lease.py) ---------

# KEYS: 1 lease, 2 meta, 3 hashes, 4 records, 5 hold, 6 events stream, 7 bodies, 8 raw digests (as last
#       written whole), 9 raw digests added since, 10 raw digests removed since
# ARGV: 1 token ("" = no lease check), 2 resource, 3 expected version, 4 now, 5 hold marker ("" = none),
#       6 upserts n, 7 deletes n, 8 events n, 9 school flags n, 10 raw digests: "" (none kept: deleted),
#       "=" .. "<verified>\n" .. every digest (written whole), or "+" .. the digests added (and the stored
#       raw digest of each record this commit rewrites or deletes is removed), then n*(id, digest, record
#       ("" = a retag), told), n*(id), n*(id, type, head, tail), n*(flag field, value; "" deletes it)
# The raw digests are valid while `$raws` equals the version (sync/snapshot.py); "+" is sent only for a
# scan that read them valid, so the version check above makes them valid still.
# Each event's envelope goes to the bodies hash (where an erasure overwrites it), its id and type to the
# stream. A stream that was empty holds no envelope at all: `bodies` in meta says so.
# The per-record sequence (docs/events.md#per-record-sequence): an upsert's `told` is the 1-based index in
# this batch of the event that tells its new state, and the digest hash stores digest .. that event's
# sequence (ASCII decimal). `told` 0 (no event: a silent baseline, a change no event tells) keeps the
# sequence the record had, none for a new record: no sequence reads as 0. The digest is 16 bytes, or 25
# when it carries the record's raw digest ('x', or 'r' before, at byte 17 and 8 bytes: sync/snapshot.py),
# so the old value's sequence starts after whichever digest the old value has.
# An upsert with an empty record is a retag: the digest-hash value alone is rewritten (a new raw digest,
# the sequence kept), and only if the record is still in the snapshot.
# A commit that takes the feed's new baseline also marks it to be handed on (`$handon`, the time).
# Returns {"ok", first_seq, last_seq, new_version} | {"lost_lease", holder} | {"conflict", version}
#       | {"corrupt", detail}
COMMIT: Final = _lua("""
local token = ARGV[1]
if token ~= '' then
  local holder = redis.call('GET', KEYS[1])
  if holder ~= token then return {'lost_lease', holder or ''} end
end
local r = ARGV[2]
local version = tonumber(redis.call('HGET', KEYS[2], '$ver' .. r) or '0')
if version ~= tonumber(ARGV[3]) then return {'conflict', tostring(version)} end
local seq = tonumber(redis.call('HGET', KEYS[2], '$seq') or '0')
local last = redis.call('XREVRANGE', KEYS[6], '+', '-', 'COUNT', 1)
if last[1] then
  local last_seq = tonumber(string.match(last[1][1], '^(%d+)-'))
  if last_seq ~= seq then return {'corrupt', 'stream ends at ' .. last[1][1] .. ', seq is ' .. seq} end
end
local unbodied = not last[1]
local n_up, n_del, n_ev = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local n_flags = tonumber(ARGV[9])
local raws = string.sub(ARGV[10], 1, 1)
local removed = {}
local function remove_raw(old)
  if old and string.sub(old, 17, 17) == 'x' then removed[#removed + 1] = string.sub(old, 18, 25) end
end
local i = 11
for _ = 1, n_up do
  local id, value, record, told = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local old = nil
  if told == 0 or raws == '+' then old = redis.call('HGET', KEYS[3], id) end
  if raws == '+' then remove_raw(old) end
  if told > 0 then
    value = value .. string.format('%d', seq + told)
  elseif old then
    local mark = string.sub(old, 17, 17)
    value = value .. string.sub(old, (mark == 'x' or mark == 'r') and 26 or 17)
  end
  if record ~= '' then
    redis.call('HSET', KEYS[3], id, value)
    redis.call('HSET', KEYS[4], id, record)
  elseif old then
    redis.call('HSET', KEYS[3], id, value)
  end
  i = i + 4
end
for _ = 1, n_del do
  if raws == '+' then remove_raw(redis.call('HGET', KEYS[3], ARGV[i])) end
  redis.call('HDEL', KEYS[3], ARGV[i])
  redis.call('HDEL', KEYS[4], ARGV[i])
  i = i + 1
end
if ARGV[5] == '' then redis.call('DEL', KEYS[5]) else redis.call('SET', KEYS[5], ARGV[5]) end
if raws == '' then
  redis.call('DEL', KEYS[8], KEYS[9], KEYS[10])
  redis.call('HDEL', KEYS[2], '$raws' .. r)
else
  if raws == '=' then
    redis.call('SET', KEYS[8], string.sub(ARGV[10], 2))
    redis.call('DEL', KEYS[9], KEYS[10])
  else
    if #ARGV[10] > 1 then redis.call('APPEND', KEYS[9], string.sub(ARGV[10], 2)) end
    if #removed > 0 then redis.call('APPEND', KEYS[10], table.concat(removed)) end
  end
  redis.call('HSET', KEYS[2], '$raws' .. r, version + 1)
end
local first = seq + 1
for _ = 1, n_ev do
  seq = seq + 1
  redis.call('XADD', KEYS[6], seq .. '-0', 'id', ARGV[i], 'type', ARGV[i + 1])
  redis.call('HSET', KEYS[7], seq, ARGV[i + 2] .. seq .. ARGV[i + 3])
  i = i + 4
end
if unbodied and n_ev > 0 then redis.call('HSET', KEYS[2], '$bodies', 1) end
for _ = 1, n_flags do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[2], ARGV[i])
  else
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
  i = i + 2
end
if redis.call('HEXISTS', KEYS[2], '$baseline' .. r) == 0 then
  redis.call('HSET', KEYS[2], '$handon' .. r, ARGV[4])
end
redis.call('HSET', KEYS[2], '$seq', seq, '$ver' .. r, version + 1, '$baseline' .. r, 1,
  '$count' .. r, redis.call('HLEN', KEYS[3]), '$polled' .. r, ARGV[4])
return {'ok', first, seq, version + 1}
""")

# KEYS: 1 meta, 2 events stream, 3 bodies
# ARGV: n*(id, type, head, tail)
# Appends events that change no snapshot (a write-back command's outcome) to the school's sequence, as
# COMMIT appends a scan's. Returns {first_seq, last_seq}.
APPEND_EVENTS: Final = _lua("""
local seq = tonumber(redis.call('HGET', KEYS[1], '$seq') or '0')
local unbodied = redis.call('XLEN', KEYS[2]) == 0
local first = seq + 1
for i = 1, #ARGV, 4 do
  seq = seq + 1
  redis.call('XADD', KEYS[2], seq .. '-0', 'id', ARGV[i], 'type', ARGV[i + 1])
  redis.call('HSET', KEYS[3], seq, ARGV[i + 2] .. seq .. ARGV[i + 3])
end
if unbodied and #ARGV > 0 then redis.call('HSET', KEYS[1], '$bodies', 1) end
redis.call('HSET', KEYS[1], '$seq', seq)
return {first, seq}
""")

# KEYS: 1 locations, 2 all-index, 3 deliveries, then 3 per event: type index, school index, both
# ARGV: 1 school id, then 3 per event: id, sequence, type
# Adds each event once (HSETNX on its location is the guard), so publishing again is harmless. The
# hand-off entry names the event; its body stays in the school's `bodies` hash (delivery/handoff.py).
PUBLISH: Final = """
local school = ARGV[1]
local added = 0
local n = (#ARGV - 1) / 3
for e = 0, n - 1 do
  local a = 2 + e * 3
  local id, seq, etype = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  if redis.call('HSETNX', KEYS[1], id, school .. ':' .. seq .. ':' .. etype) == 1 then
    redis.call('ZADD', KEYS[2], 0, id)
    redis.call('ZADD', KEYS[4 + e * 3], 0, id)
    redis.call('ZADD', KEYS[5 + e * 3], 0, id)
    redis.call('ZADD', KEYS[6 + e * 3], 0, id)
    redis.call('XADD', KEYS[3], '*', 'id', id, 'school_id', school, 'sequence', seq, 'type', etype)
    added = added + 1
  end
end
return added
"""

# KEYS: 1 meta; ARGV: 1 published sequence. Only ever moves the watermark forward.
ADVANCE_PUBLISHED: Final = _lua("""
local current = tonumber(redis.call('HGET', KEYS[1], '$published') or '0')
local wanted = tonumber(ARGV[1])
if wanted > current then redis.call('HSET', KEYS[1], '$published', wanted) return wanted end
return current
""")

# KEYS: 1 meta; ARGV: 1 field ($handon<resource>), 2 the time read, 3 now.
# Takes over a baseline's hand-on left behind: moves its time to now if it still holds the time read.
HANDON_CLAIM: Final = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

# Lua: whether a record id is a decimal integer (the state API orders those by value, then the rest as text).
_INTEGER_ID: Final = """
local function integer(id)
  if id == '0' or (#id <= 15 and string.find(id, '^[1-9]%d*$$')) then return tonumber(id) end
  return nil
end
"""

# KEYS: 1 meta, 2 hashes, 3 records; ARGV: 1 after ("" = from the first), 2 limit
# One page of a snapshot for the state API (sync/snapshot.py `read_records`), read with the school's
# sequence in one step. Order: ids that are integers (digits, no leading zero, at most 15 of them, so exact
# as a Lua number) by value, then the others as text (Lua compares strings with strcoll; Redis takes
# LC_COLLATE from its environment, "C" = byte order in the usual images). It reads every id of the resource
# (HKEYS) and sorts those after `after`, so a page costs the size of the resource, not of the page: fine
# for a school (about 1,500 records); the text ids are sorted only when the integers do not fill the page.
# A resync, which reads a whole feed, sorts its ids once instead (FREEZE_IDS).
# Returns {seq, more (0/1), ids, their digest-hash values, their records (nil: erased)}
RECORDS_PAGE: Final = _lua(
    _INTEGER_ID
    + """
local after, limit = ARGV[1], tonumber(ARGV[2])
local after_int = after ~= '' and integer(after) or nil
local texts_only = after ~= '' and not after_int
local ints, texts = {}, {}
for _, id in ipairs(redis.call('HKEYS', KEYS[2])) do
  local n = integer(id)
  if n then
    if not texts_only and (not after_int or n > after_int) then ints[#ints + 1] = n end
  elseif not texts_only or id > after then
    texts[#texts + 1] = id
  end
end
table.sort(ints)
local page = {}
for k = 1, math.min(#ints, limit) do page[k] = string.format('%d', ints[k]) end
if #page < limit and #texts > 0 then
  table.sort(texts)
  for k = 1, math.min(#texts, limit - #page) do page[#page + 1] = texts[k] end
end
local seq = redis.call('HGET', KEYS[1], '$seq') or '0'
local more = (#ints + #texts > #page) and 1 or 0
if #page == 0 then return {seq, more, {}, {}, {}} end
local values = redis.call('HMGET', KEYS[2], unpack(page))
return {seq, more, page, values, redis.call('HMGET', KEYS[3], unpack(page))}
"""
)

# KEYS: 1 hashes, 2 records; ARGV: record ids.
# The ids whose record the snapshot knows (its digest) but no longer keeps (its body): erased
# (ERASE_RECORD). A resync's check of a chunk it queued, without reading the records again.
ERASED_AMONG: Final = """
local out = {}
for _, id in ipairs(ARGV) do
  if redis.call('HEXISTS', KEYS[2], id) == 0 and redis.call('HEXISTS', KEYS[1], id) == 1 then
    out[#out + 1] = id
  end
end
return out
"""

# KEYS: 1 meta, 2 hashes, 3 the id list; ARGV: 1 ttl ms.
# The feed's ids in RECORDS_PAGE's order, written to a list once (a resync then reads it a chunk at a time
# rather than sorting the feed's ids for every chunk). Returns {seq, count}: the school's sequence and the
# number of ids, read in the same step.
FREEZE_IDS: Final = _lua(
    _INTEGER_ID
    + """
local ints, texts = {}, {}
for _, id in ipairs(redis.call('HKEYS', KEYS[2])) do
  local n = integer(id)
  if n then ints[#ints + 1] = n else texts[#texts + 1] = id end
end
table.sort(ints)
table.sort(texts)
redis.call('DEL', KEYS[3])
local batch = {}
local function push(id)
  batch[#batch + 1] = id
  if #batch == 1000 then
    redis.call('RPUSH', KEYS[3], unpack(batch))
    batch = {}
  end
end
for k = 1, #ints do push(string.format('%d', ints[k])) end
for k = 1, #texts do push(texts[k]) end
if #batch > 0 then redis.call('RPUSH', KEYS[3], unpack(batch)) end
if #ints + #texts > 0 then redis.call('PEXPIRE', KEYS[3], ARGV[1]) end
return {redis.call('HGET', KEYS[1], '$seq') or '0', #ints + #texts}
"""
)

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

# KEYS: 1 the school's `command` lease, 2 its commands hash, 3 its command queue, 4 its command origins;
# ARGV: 1 token, 2 command id, 3 the command (msgpack), 4 "1" to take it out of the queue (it finished),
# 5 the origin field ("" for none), 6 the origin (JSON). A command is written only by the holder of the
# school's `command` lease: a replica that lost it (a stall past its TTL) writes nothing over what the next
# holder wrote. Returns 1 when written, 0 when the lease is not the caller's.
COMMAND_WRITE: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
if ARGV[4] == '1' then redis.call('LREM', KEYS[3], 1, ARGV[2]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[4], ARGV[5], ARGV[6]) end
return 1
"""

# KEYS: 1 lease, 2 owner; ARGV: 1 token. Deletes only the caller's own lease.
LEASE_RELEASE: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""


# KEYS: 1 meta, then 6 per resource: hashes, records, hold, the 3 raw digest keys; ARGV: 1 cutoff (Unix
# time), 2 now, then the resource names. Purges the record snapshots of a school whose authorisation has
# been gone (`revoked` or `denied` flag) since before the cutoff; the sequence and the event log stay.
# Returns 1 when it purged.
PURGE_SNAPSHOTS: Final = _lua("""
if redis.call('HEXISTS', KEYS[1], '$purged') == 1 then return 0 end
local since = nil
for _, flag in ipairs({'$revoked', '$denied'}) do
  local value = tonumber(redis.call('HGET', KEYS[1], flag) or '')
  if value and (since == nil or value < since) then since = value end
end
if since == nil or since > tonumber(ARGV[1]) then return 0 end
for n = 3, #ARGV do
  local r = ARGV[n]
  local k = 2 + (n - 3) * 6
  redis.call('DEL', KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5])
  redis.call('HDEL', KEYS[1], '$ver' .. r, '$baseline' .. r, '$count' .. r, '$polled' .. r,
    '$handon' .. r, '$raws' .. r)
end
redis.call('HSET', KEYS[1], '$purged', ARGV[2])
return 1
""")

# KEYS: 1 meta, 2 hashes, 3 records, 4 events stream, 5 erased, 6 bodies
# ARGV: 1 resource, 2 record id, 3 the school's seq when the events were read, 4 n, then n*(seq, id, body)
# An erasure (sync/snapshot.py `erase`): each named event's envelope in the bodies hash is overwritten by
# its erased envelope (also recorded in the erased hash), and the record's stored body leaves the
# snapshot while its digest stays. The stream entries (id and type) stay. Refused when the school has
# events it has not published yet or events came since they were read (the caller reads again), when an
# entry is not the event named, or while the stream may still hold envelopes (`bodies` not set in meta:
# the caller runs EVENTS_UNBODY first). The resource's version moves, so a poll that diffed against the
# record's old body cannot commit it back.
# Returns {"ok", events erased, record removed (0/1), digest kept (0/1)} | {"moved", detail} | {"unbody"}
ERASE_RECORD: Final = _lua("""
if redis.call('HGET', KEYS[1], '$bodies') ~= '1' then return {'unbody'} end
local seq = tonumber(redis.call('HGET', KEYS[1], '$seq') or '0')
if seq ~= tonumber(ARGV[3]) then return {'moved', 'the school has new events'} end
if tonumber(redis.call('HGET', KEYS[1], '$published') or '0') < seq then
  return {'moved', 'the school has unpublished events'}
end
local n = tonumber(ARGV[4])
for i = 0, n - 1 do
  local s, id = ARGV[5 + i * 3], ARGV[6 + i * 3]
  local entry = redis.call('XRANGE', KEYS[4], s .. '-0', s .. '-0')[1]
  if not entry then return {'moved', 'no entry ' .. s} end
  local found = nil
  for f = 1, #entry[2], 2 do
    if entry[2][f] == 'id' then found = entry[2][f + 1] end
  end
  if found ~= id then return {'moved', 'entry ' .. s .. ' is not ' .. id} end
end
for i = 0, n - 1 do
  local s, body = ARGV[5 + i * 3], ARGV[7 + i * 3]
  redis.call('HSET', KEYS[6], s, body)
  redis.call('HSET', KEYS[5], s, body)
end
local removed = redis.call('HDEL', KEYS[3], ARGV[2])
local kept = redis.call('HEXISTS', KEYS[2], ARGV[2])
if n > 0 or removed > 0 then redis.call('HINCRBY', KEYS[1], '$ver' .. ARGV[1], 1) end
return {'ok', n, removed, kept}
""")

# KEYS: 1 meta, 2 events stream, 3 bodies, 4 the stream being rebuilt; ARGV: 1 page size
# Before an erasure, once per school: a stream written before the bodies hash holds envelopes, and the
# entries deleted from it (old erasures, retention) keep their bytes in its nodes until a whole node goes,
# so Redis's files still write them. This moves every envelope into the bodies hash (unless it holds one
# already), rebuilds the stream from the ids and types alone (same entry ids) and replaces it, so that no
# byte of a deleted entry is left; then `bodies` in meta is set. One script: commits wait, and see the
# same stream end. Returns how many entries were kept.
EVENTS_UNBODY: Final = _lua("""
local page, start, kept = tonumber(ARGV[1]), '-', 0
redis.call('DEL', KEYS[4])
while true do
  local entries = redis.call('XRANGE', KEYS[2], start, '+', 'COUNT', page)
  for _, entry in ipairs(entries) do
    local id, etype, body = '', '', nil
    for f = 1, #entry[2], 2 do
      local name = entry[2][f]
      if name == 'id' then id = entry[2][f + 1]
      elseif name == 'type' then etype = entry[2][f + 1]
      elseif name == 'body' then body = entry[2][f + 1] end
    end
    if body then redis.call('HSETNX', KEYS[3], string.match(entry[1], '^(%d+)-'), body) end
    redis.call('XADD', KEYS[4], entry[1], 'id', id, 'type', etype)
    kept = kept + 1
  end
  if #entries < page then break end
  start = '(' .. entries[#entries][1]
end
if kept > 0 then redis.call('RENAME', KEYS[4], KEYS[2]) else redis.call('DEL', KEYS[2]) end
redis.call('HSET', KEYS[1], '$bodies', 1)
return kept
""")

# --- the `{events}` slot: the delivery hand-off (delivery/handoff.py) ---------------------------------------

# KEYS: cursor. ARGV: expected, new. Moves the cursor only forward from where this holder read it.
HANDOFF_ADVANCE: Final = """
local current = redis.call('GET', KEYS[1]) or '0-0'
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""

# --- a subscription's slot: its record (delivery/store.py) --------------------------------------------------

# KEYS: record. ARGV: field, value, ... Sets fields only if the subscription still exists, so a late write
# can't resurrect a deleted one.
SUBSCRIPTION_UPDATE: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""

# KEYS: due, leases. ARGV: now. On re-enabling: everything waiting for a later retry becomes due now (work
# in flight is left alone).
SUBSCRIPTION_RESUME: Final = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
for _, id in ipairs(ids) do
  if redis.call('HEXISTS', KEYS[2], id) == 0 then redis.call('ZADD', KEYS[1], ARGV[1], id) end
end
return #ids
"""

# --- a subscription's slot: its delivery queue (delivery/queue.py) ------------------------------------------

# KEYS: 1 fanned, 2 deliveries, 3 due, 4 lanes, 5 traces, 6 subscription, then the lanes the items name
#       (ordered only), or 7 the feed (pull only)
# ARGV: 1 ordered, 2 now, 3 check_fanned, 4 the items, each 7 fields packed by `codec.packed`:
#       event_id, event_ts, delivery_id, record, school_id, trace, lane (its index after KEYS[6]); 5 pull
# Queues a batch of events for one subscription, in the order given (one call, not one per event). A pull
# subscription's deliveries go to its feed (one entry each, in this order) instead of `due` and lanes.
# Returns per item 1 when queued, 0 when `check_fanned` found the event queued already or the subscription
# is gone: a fan-out that read the subscription list before a delete writes nothing (a delete removes the
# record first, see delivery/store.py), so no queue outlives its subscription.
DELIVERY_ENQUEUE: Final = (
    _FIELDS_LUA
    + """
local ordered, now, once, items, pull = ARGV[1] == '1', ARGV[2], ARGV[3] == '1', ARGV[4], ARGV[5] == '1'
local rows, events, pos = {}, {}, 1
while pos <= #items do
  local r = {}
  pos, r.event, r.ts, r.id, r.record, r.school, r.trace, r.lane = fields(items, pos, 7)
  rows[#rows + 1] = r
  events[#events + 1] = r.event
end
if redis.call('EXISTS', KEYS[6]) == 0 then
  local refused = {}
  for i = 1, #rows do refused[i] = 0 end
  return refused
end
local known = once and redis.call('ZMSCORE', KEYS[1], unpack(events)) or {}
local seen, out, marks, records, traces, due = {}, {}, {}, {}, {}, {}
for i, r in ipairs(rows) do
  if once and (known[i] or seen[r.event]) then
    out[i] = 0
  else
    seen[r.event] = true
    out[i] = 1
    marks[#marks + 1] = r.ts; marks[#marks + 1] = r.event
    records[#records + 1] = r.id; records[#records + 1] = r.record
    traces[#traces + 1] = r.event; traces[#traces + 1] = r.trace
    if pull then
      redis.call('XADD', KEYS[7], '*', 'd', r.id, 'e', r.event)
    elseif ordered then
      redis.call('SADD', KEYS[4], r.school)
      if redis.call('RPUSH', KEYS[6 + tonumber(r.lane)], r.id) == 1 then
        redis.call('ZADD', KEYS[3], 'NX', now, r.id)
      end
    else
      due[#due + 1] = now; due[#due + 1] = r.id
    end
  end
end
if #marks > 0 then
  redis.call('ZADD', KEYS[1], 'NX', unpack(marks))
  redis.call('HSET', KEYS[2], unpack(records))
  redis.call('HSET', KEYS[5], unpack(traces))
end
if #due > 0 then redis.call('ZADD', KEYS[3], unpack(due)) end
return out
"""
)

_CLAIM_LUA: Final = """
local function claim(due_key, leases_key, deliveries_key, ids, lease_until, token, out)
  local records = redis.call('HMGET', deliveries_key, unpack(ids))
  local due, leases, gone = {}, {}, {}
  for i, id in ipairs(ids) do
    if records[i] then
      due[#due + 1] = lease_until; due[#due + 1] = id
      leases[#leases + 1] = id; leases[#leases + 1] = token
      out[#out + 1] = records[i]
    else
      gone[#gone + 1] = id
    end
  end
  if #due > 0 then
    redis.call('ZADD', due_key, unpack(due))
    redis.call('HSET', leases_key, unpack(leases))
  end
  if #gone > 0 then
    redis.call('ZREM', due_key, unpack(gone))
    redis.call('HDEL', leases_key, unpack(gone))
  end
end
"""
"""`claim(...)`: leases `ids` (at most 500) of the due set to `token` until `lease_until` (each due again
then, should its outcome never be written), appends their records to `out`; ids whose record is gone
leave the due set."""

# KEYS: due, leases, deliveries.  ARGV: now, lease_until, token, limit
# Works through the due ids in chunks of 500: Lua's `unpack` fails near 8,000 values ("too many results to
# unpack"), and a claim may take `BRIDGE_DELIVERY_CONCURRENCY` (up to 10,000) deliveries at once.
DELIVERY_CLAIM: Final = (
    _CLAIM_LUA
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for first = 1, #ids, 500 do
  claim(KEYS[1], KEYS[2], KEYS[3], {unpack(ids, first, math.min(first + 499, #ids))}, ARGV[2], ARGV[3], out)
end
return out
"""
)

# KEYS: 1 due, 2 leases, 3 deliveries, 4 attempts, 5 dead, 6 subscription, 7 traces, then the items' lanes
# ARGV: 1 log_cutoff, 2 log_max, 3 the items, each 11 fields packed by `codec.packed`: id, token, outcome,
#       now, next_at, record, attempt, event_id, queued_trace, delivered_trace, lane (its index after
#       KEYS[7]); 4 ordered; 5 claim: a lease_until ('' for none), 6 its token, 7 the subscription's
#       `updated_at` as the claimer knows it (JSON), 8 for an unordered subscription, how many due
#       deliveries the claim may take, 9 the time they are due by
# A batch of finished attempts of one subscription, in the order given (one call, not one per delivery);
# each item is what one completion was before. Returns {per item -1 when its lease was lost, else the
# subscription's failing_since after it ('' when not failing); the records claimed; 1 when a lane's next
# head was made due rather than claimed, else 0}. On success the
# event's trace records it, unless a later delivery of the event has taken its place. The attempt log is
# trimmed once per batch. With a claim, a lane moved on has its next head claimed at once (leased until
# ARGV[5] under ARGV[6], its record returned) rather than made due for the next claim, while the
# subscription is enabled and unchanged since the claimer read it (else due now, as without a claim). An
# unordered subscription's claim takes up to ARGV[8] of its due deliveries, as DELIVERY_CLAIM does, on the
# same condition.
DELIVERY_COMPLETE: Final = (
    _FIELDS_LUA
    + _CLAIM_LUA
    + _lua("""
local blob, ordered, rows, ids, pos = ARGV[3], ARGV[4] == '1', {}, {}, 1
while pos <= #blob do
  local r = {}
  pos, r.id, r.token, r.outcome, r.now, r.next_at, r.record, r.attempt, r.event, r.queued, r.delivered,
    r.lane = fields(blob, pos, 11)
  rows[#rows + 1] = r
  ids[#ids + 1] = r.id
end
if #rows == 0 then return {{}, {}, 0} end
local leases = redis.call('HMGET', KEYS[2], unpack(ids))
local exists = redis.call('EXISTS', KEYS[6]) == 1
local now_is = exists and redis.call('HMGET', KEYS[6], '$failing_since', 'enabled', 'updated_at') or {}
local since = exists and now_is[1]
if since == 'null' then since = false end
local claimed, made_due = {}, 0
local claiming = ARGV[5] ~= '' and now_is[2] == 'true' and now_is[3] == ARGV[7]
local first_since = since
local out, held, log, delivered, unqueue, events = {}, {}, {}, {}, {}, {}
for i, r in ipairs(rows) do
  if leases[i] ~= r.token then
    out[i] = -1
  else
    held[#held + 1] = r.id
    log[#log + 1] = r.now; log[#log + 1] = r.attempt
    if r.outcome == 'ok' then
      delivered[#delivered + 1] = r
      events[#events + 1] = r.event
      if exists then since = false end
    elseif exists and not since then
      since = r.now
    end
    if r.outcome == 'retry' or r.outcome == 'hold' then
      redis.call('HSET', KEYS[3], r.id, r.record)
      redis.call('ZADD', KEYS[1], r.next_at, r.id)
    else
      if r.outcome == 'dead' then
        redis.call('HSET', KEYS[3], r.id, r.record)
        redis.call('ZADD', KEYS[5], r.now, r.id)
      end
      if ordered then
        redis.call('ZREM', KEYS[1], r.id)
        local key = KEYS[7 + tonumber(r.lane)]
        if redis.call('LINDEX', key, 0) == r.id then
          redis.call('LPOP', key)
        else
          redis.call('LREM', key, 1, r.id)
        end
        local nxt = redis.call('LINDEX', key, 0)
        if nxt then
          local record = claiming and redis.call('HGET', KEYS[3], nxt)
          if record and redis.call('ZADD', KEYS[1], 'NX', ARGV[5], nxt) == 1 then
            redis.call('HSET', KEYS[2], nxt, ARGV[6])
            claimed[#claimed + 1] = record
          else
            redis.call('ZADD', KEYS[1], 'NX', r.now, nxt)
            made_due = 1
          end
        end
      else
        unqueue[#unqueue + 1] = r.id
      end
    end
    out[i] = since or ''
  end
end
if #held > 0 then
  redis.call('HDEL', KEYS[2], unpack(held))
  redis.call('ZADD', KEYS[4], unpack(log))
end
if #unqueue > 0 then redis.call('ZREM', KEYS[1], unpack(unqueue)) end
local limit = tonumber(ARGV[8]) or 0
if claiming and not ordered and limit > 0 then
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[9], 'LIMIT', 0, limit)
  if #ids > 0 then claim(KEYS[1], KEYS[2], KEYS[3], ids, ARGV[5], ARGV[6], claimed) end
end
if #delivered > 0 then
  local gone, traces, updates = {}, redis.call('HMGET', KEYS[7], unpack(events)), {}
  for j, r in ipairs(delivered) do
    gone[j] = r.id
    if traces[j] == r.queued then updates[#updates + 1] = r.event; updates[#updates + 1] = r.delivered end
  end
  redis.call('HDEL', KEYS[3], unpack(gone))
  if #updates > 0 then redis.call('HSET', KEYS[7], unpack(updates)) end
end
if exists and since ~= first_since then redis.call('HSET', KEYS[6], '$failing_since', since or 'null') end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -tonumber(ARGV[2]) - 1)
return {out, claimed, made_due}
""")
)

# KEYS: fanned, traces, subscription.  ARGV: event_id, event_ts, trace, check_fanned
# An event not sent to this subscription (an update outside its `fields`, or one being erased): its trace
# says why; `fanned` makes a second fan-out of it a no-op, as for a queued one. Returns 0 (and writes
# nothing) when the subscription is gone, as DELIVERY_ENQUEUE does.
DELIVERY_SKIP: Final = """
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
if redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1]) == 0 and ARGV[4] == '1' then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""

# KEYS: deliveries, due, leases, dead, lane, traces, attempts
# ARGV: id, event_id, now, queued_trace, new_trace, attempt ('' for none), leased_too ('1': drop it even while
#       a worker holds it)
# Drops one delivery, pending or dead, with its body (an erasure, or retention): if it headed its school's
# lane the next one is due now. The event's trace becomes `new_trace` if it named this delivery, and the
# attempt log gets `attempt`. A worker that still sends it finds its lease gone and records nothing.
# Returns 1 when dropped, 0 when it was gone already (or leased, without leased_too).
DELIVERY_DROP: Final = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if ARGV[7] ~= '1' and redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
if redis.call('LINDEX', KEYS[5], 0) == ARGV[1] then
  redis.call('LPOP', KEYS[5])
  local nxt = redis.call('LINDEX', KEYS[5], 0)
  if nxt then redis.call('ZADD', KEYS[2], 'NX', ARGV[3], nxt) end
else
  redis.call('LREM', KEYS[5], 1, ARGV[1])
end
if redis.call('HGET', KEYS[6], ARGV[2]) == ARGV[4] then redis.call('HSET', KEYS[6], ARGV[2], ARGV[5]) end
if ARGV[6] ~= '' then redis.call('ZADD', KEYS[7], ARGV[3], ARGV[6]) end
return 1
"""

# KEYS: due, leases.  ARGV: id, token, now.  A graceful stop hands unfinished work back at once.
DELIVERY_RELEASE: Final = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
return 1
"""

# KEYS: dead, deliveries, due, lane, lanes, traces
# ARGV: id, record, now, ordered, school_id, event_id, trace
DELIVERY_RETRY_DEAD: Final = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[6], ARGV[6], ARGV[7])
if ARGV[4] == '1' then
  redis.call('SADD', KEYS[5], ARGV[5])
  if redis.call('RPUSH', KEYS[4], ARGV[1]) == 1 then redis.call('ZADD', KEYS[3], 'NX', ARGV[3], ARGV[1]) end
else
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
end
return 1
"""

# KEYS: attempts, fanned, dead, deliveries, traces.  ARGV: cutoff, batch.
# Retention: forget what is too old, at most `batch` events and dead letters per call (Redis stays
# responsive); returns {events forgotten, dead letters forgotten}.
DELIVERY_TRIM: Final = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local events = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(events) do
  redis.call('HDEL', KEYS[5], id)
  redis.call('ZREM', KEYS[2], id)
end
local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(old) do
  redis.call('HDEL', KEYS[4], id)
  redis.call('ZREM', KEYS[3], id)
end
return {#events, #old}
"""

# --- the `{d6}` slot: the d6 request budget (d6/budget.py explains the algorithm, GCRA) ---------------------

# KEYS[1] the budget key; ARGV[1] the emission interval in microseconds (an integer).
# Returns 0 when a token was taken, otherwise the microseconds to wait before asking again.
# A TAT more than one interval ahead (Redis' clock stepped back after a failover, or another process
# runs with a lower rate) is clamped, so nobody waits longer than one interval for it.
# Numbers are formatted with %.0f: Lua 5.1's default number format (%.14g) would round a
# microsecond timestamp (16 digits). Plain commands only (`TIME`, `GET`, `SET ... PX`), so it also runs on
# fakeredis' Lua (the embedded demo store).
D6_BUDGET: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat > now + interval then
  tat = now + interval
end
if tat > now then
  return math.ceil(tat - now)
end
local ttl = math.ceil(interval / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', now + interval), 'PX', string.format('%.0f', ttl))
return 0
"""


# --- a pull subscription's feed (delivery/feed.py) ---------------------------------------------------------

# KEYS: feed, deliveries.  ARGV: after (an entry id), count
# The next `count` feed entries after `after`, each as its entry id then its stored delivery (nil when it
# was dropped since: an erasure, retention), in one round trip.
FEED_READ: Final = """
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
local out = {}
for i, entry in ipairs(entries) do
  local fields, delivery = entry[2], false
  for j = 1, #fields, 2 do
    if fields[j] == 'd' then delivery = fields[j + 1] end
  end
  out[2 * i - 1] = entry[1]
  out[2 * i] = delivery and redis.call('HGET', KEYS[2], delivery) or false
end
return out
"""

# KEYS: 1 feed, 2 deliveries, 3 traces, 4 feed:at, 5 subscription
# ARGV: 1 the committed position read before ('' for none), 2 the new one, 3 the first entry id kept,
#       4 the items up to it, each 4 fields packed by `codec.packed`: delivery_id, event_id, queued_trace,
#       delivered_trace
# Commits one chunk of a feed: its deliveries go, each event's trace says delivered unless a later delivery
# took its place, the stream is trimmed. Returns 1; 0 when the committed position is no longer what the
# caller read (another reader committed meanwhile: it reads again); -1 when the subscription is gone.
FEED_COMMIT: Final = (
    _FIELDS_LUA
    + """
if redis.call('EXISTS', KEYS[5]) == 0 then return -1 end
if (redis.call('HGET', KEYS[4], 'committed') or '') ~= ARGV[1] then return 0 end
local items, pos, ids, events, rows = ARGV[4], 1, {}, {}, {}
while pos <= #items do
  local r = {}
  pos, r.id, r.event, r.queued, r.delivered = fields(items, pos, 4)
  rows[#rows + 1] = r
  ids[#ids + 1] = r.id
  events[#events + 1] = r.event
end
if #rows > 0 then
  redis.call('HDEL', KEYS[2], unpack(ids))
  local traces, updates = redis.call('HMGET', KEYS[3], unpack(events)), {}
  for i, r in ipairs(rows) do
    if traces[i] == r.queued then updates[#updates + 1] = r.event; updates[#updates + 1] = r.delivered end
  end
  if #updates > 0 then redis.call('HSET', KEYS[3], unpack(updates)) end
end
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[3])
redis.call('HSET', KEYS[4], 'committed', ARGV[2])
return 1
"""
)


class Scripts:
    """Every script registered once on one client."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.commit: AsyncScript = redis.register_script(COMMIT)
        self.handon_claim: AsyncScript = redis.register_script(HANDON_CLAIM)
        self.publish: AsyncScript = redis.register_script(PUBLISH)
        self.append_events: AsyncScript = redis.register_script(APPEND_EVENTS)
        self.advance_published: AsyncScript = redis.register_script(ADVANCE_PUBLISHED)
        self.lease_acquire: AsyncScript = redis.register_script(LEASE_ACQUIRE)
        self.lease_renew: AsyncScript = redis.register_script(LEASE_RENEW)
        self.lease_release: AsyncScript = redis.register_script(LEASE_RELEASE)
        self.command_write: AsyncScript = redis.register_script(COMMAND_WRITE)
        self.purge_snapshots: AsyncScript = redis.register_script(PURGE_SNAPSHOTS)
        self.records_page: AsyncScript = redis.register_script(RECORDS_PAGE)
        self.freeze_ids: AsyncScript = redis.register_script(FREEZE_IDS)
        self.erased_among: AsyncScript = redis.register_script(ERASED_AMONG)
        self.erase_record: AsyncScript = redis.register_script(ERASE_RECORD)
        self.events_unbody: AsyncScript = redis.register_script(EVENTS_UNBODY)
        self.handoff_advance: AsyncScript = redis.register_script(HANDOFF_ADVANCE)
        self.subscription_update: AsyncScript = redis.register_script(SUBSCRIPTION_UPDATE)
        self.subscription_resume: AsyncScript = redis.register_script(SUBSCRIPTION_RESUME)
        self.delivery_enqueue: AsyncScript = redis.register_script(DELIVERY_ENQUEUE)
        self.delivery_claim: AsyncScript = redis.register_script(DELIVERY_CLAIM)
        self.delivery_complete: AsyncScript = redis.register_script(DELIVERY_COMPLETE)
        self.delivery_release: AsyncScript = redis.register_script(DELIVERY_RELEASE)
        self.delivery_skip: AsyncScript = redis.register_script(DELIVERY_SKIP)
        self.delivery_drop: AsyncScript = redis.register_script(DELIVERY_DROP)
        self.delivery_retry_dead: AsyncScript = redis.register_script(DELIVERY_RETRY_DEAD)
        self.delivery_trim: AsyncScript = redis.register_script(DELIVERY_TRIM)
        self.feed_read: AsyncScript = redis.register_script(FEED_READ)
        self.feed_commit: AsyncScript = redis.register_script(FEED_COMMIT)
        self.d6_budget: AsyncScript = redis.register_script(D6_BUDGET)
