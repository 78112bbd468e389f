"""Budget counters in Redis (redis-py): one Lua script per reserve, settle and release, so each is atomic
on the server, and every key expires with its window. Machines sharing the Redis share the limits.
Install with `pip install 'tokentrail[redis]'`.

Keys (all under `prefix`): `h:<head>` a hash of counters, holding each live reservation as a field
`q:<reservation>` ("limbs tokens lease"; a lease that passed is given back by the next call that reads
the head), `i:<budget>` an index of the budget's heads, `defs` and `limits` hashes for definitions and
operator overrides. Lua numbers are doubles, so money travels as three exact limbs of 10**12 (10**-24,
10**-12 and 1 USD).

Each call is one EVALSHA round trip. With `pipeline=True` (URL `?pipeline=1`) a settlement is sent
without waiting: its reply is read with the next command on the same connection, or by `flush()` (which
`read`, `heads`, `reset` and `close` call), and the manager emits its alerts then.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tokentrail.budgets.backend import HeadRow, ReserveOutcome, SettleOutcome, Slot, Tally
from tokentrail.errors import StoreError

if TYPE_CHECKING:
    import redis as redis_module

__all__ = ["RedisBackend"]

_LIMB = 10**12

_LUA_COMMON = r"""
local P = ARGV[1]
local B = 1e12

local function norm(lo, mid, hi)
  if lo >= B or lo < 0 then local c = math.floor(lo / B); lo = lo - c * B; mid = mid + c end
  if mid >= B or mid < 0 then local c = math.floor(mid / B); mid = mid - c * B; hi = hi + c end
  return lo, mid, hi
end
local function over(a0, a1, a2, b0, b1, b2)  -- a > b (normalized limbs)
  if a2 ~= b2 then return a2 > b2 end
  if a1 ~= b1 then return a1 > b1 end
  return a0 > b0
end
local function f(x) return string.format('%.0f', x) end  -- integers (limbs, tokens)
local function fl(x) return string.format('%.17g', x) end  -- times (epoch seconds)

-- A head's counters (HMGET), plus the field a call asks for after them. `raw` keeps the stored text:
-- a head no call changed is answered with it as is (formatting numbers is a script's main cost).
local heads = {}
local function load(name, extra)
  local h = heads[name]
  if h then return h end
  local key = P .. 'h:' .. name
  local v = redis.call('HMGET', key, 'su0', 'su1', 'su2', 'st', 'ru0', 'ru1', 'ru2', 'rt', 'lvl', 'nl', 'x', extra or 'x')
  h = {
    name = name, key = key, raw = v,
    su0 = tonumber(v[1]) or 0, su1 = tonumber(v[2]) or 0, su2 = tonumber(v[3]) or 0, st = tonumber(v[4]) or 0,
    ru0 = tonumber(v[5]) or 0, ru1 = tonumber(v[6]) or 0, ru2 = tonumber(v[7]) or 0, rt = tonumber(v[8]) or 0,
    lvl = tonumber(v[9]) or 0, nl = tonumber(v[10]), x = tonumber(v[11]),
    had_nl = v[10] ~= false,
  }
  if extra then h.extra = v[12] end
  heads[name] = h
  return h
end

-- The head's counters as text, in HMGET order (su0 su1 su2 st ru0 ru1 ru2 rt); stored as they are.
local function text(h)
  if h.changed then
    return {f(h.su0), f(h.su1), f(h.su2), f(h.st), f(h.ru0), f(h.ru1), f(h.ru2), f(h.rt)}
  end
  local v = h.raw
  return {v[1] or '0', v[2] or '0', v[3] or '0', v[4] or '0', v[5] or '0', v[6] or '0', v[7] or '0', v[8] or '0'}
end

-- Give back what reservations whose lease passed still hold: their `q:<id>` fields in the head.
local function purge(h, now)
  if h.nl == nil or h.nl > now then return false end
  local all = redis.call('HGETALL', h.key)
  local nl = nil
  local dead = {}
  for i = 1, #all, 2 do
    local field = all[i]
    if string.byte(field, 1) == 113 and string.byte(field, 2) == 58 then  -- 'q:'
      local u0, u1, u2, t, lease = string.match(all[i + 1], '(%S+) (%S+) (%S+) (%S+) (%S+)')
      lease = tonumber(lease)
      if lease <= now then
        h.ru0, h.ru1, h.ru2 = norm(h.ru0 - tonumber(u0), h.ru1 - tonumber(u1), h.ru2 - tonumber(u2))
        h.rt = h.rt - tonumber(t)
        dead[#dead + 1] = field
      elseif nl == nil or lease < nl then
        nl = lease
      end
    end
  end
  for i = 1, #dead, 500 do redis.call('HDEL', h.key, unpack(dead, i, math.min(i + 499, #dead))) end
  h.nl = nl
  h.changed = true
  return true
end

local function write_counters(h)
  local t = text(h)
  redis.call('HSET', h.key, 'su0', t[1], 'su1', t[2], 'su2', t[3], 'st', t[4],
    'ru0', t[5], 'ru1', t[6], 'ru2', t[7], 'rt', t[8], 'lvl', h.lvl)
  if h.nl then redis.call('HSET', h.key, 'nl', fl(h.nl))
  elseif h.had_nl then redis.call('HDEL', h.key, 'nl') end
  return t
end

-- A head that is new, or whose window now ends later: its description, expiry and index follow.
local function place(h, budget, scope_key, window_key, expires)
  if h.x == nil then
    redis.call('HSET', h.key, 'b', budget, 's', scope_key, 'w', window_key, 'x', fl(expires))
  elseif h.x < expires then
    redis.call('HSET', h.key, 'x', fl(expires))
  else
    return
  end
  h.x = expires
  redis.call('PEXPIREAT', h.key, math.floor(expires * 1000))
  redis.call('ZADD', P .. 'i:' .. budget, expires, h.name)
end

local function tally(first, last)  -- the window of the heads named ARGV[first..last]
  local h = heads[ARGV[first]]
  if first == last then return h.su0, h.su1, h.su2, h.st, h.ru0, h.ru1, h.ru2, h.rt, h.lvl end
  local su0, su1, su2, st, ru0, ru1, ru2, rt, fired = 0, 0, 0, 0, 0, 0, 0, 0, 0
  for j = first, last do
    h = heads[ARGV[j]]
    su0, su1, su2 = norm(su0 + h.su0, su1 + h.su1, su2 + h.su2); st = st + h.st
    ru0, ru1, ru2 = norm(ru0 + h.ru0, ru1 + h.ru1, ru2 + h.ru2); rt = rt + h.rt
    if h.lvl > fired then fired = h.lvl end
  end
  return su0, su1, su2, st, ru0, ru1, ru2, rt, fired
end

local function sums(first, last)  -- tally() as text
  if first == last then return table.concat(text(heads[ARGV[first]]), ' ') end
  local su0, su1, su2, st, ru0, ru1, ru2, rt = tally(first, last)
  return table.concat({f(su0), f(su1), f(su2), f(st), f(ru0), f(ru1), f(ru2), f(rt)}, ' ')
end
"""

# Reserve. ARGV: prefix, slot count, reservation, now, lease, then per slot: head count, head names,
# budget, scope key, window key, expires at, enforce (1/0), limit limbs ('' when none), token limit
# ('' when none), charge limbs, charge tokens, and the entry kept for it ("limbs tokens lease").
# Answers "refused(-1: none) su0 su1 su2 st ru0 ru1 ru2 rt …" with each slot's window before it.
_RESERVE = (
    _LUA_COMMON
    + r"""
local n = tonumber(ARGV[2])
local rid, now, lease = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {-1}
local refused = -1
local starts = {}
local pos = 6
for i = 1, n do
  local nh = tonumber(ARGV[pos])
  starts[i] = pos
  for j = pos + 1, pos + nh do purge(load(ARGV[j]), now) end
  pos = pos + nh + 15
end
for i = 1, n do
  local p = starts[i]
  local q = p + tonumber(ARGV[p])
  out[i + 1] = sums(p + 1, q)
  if refused < 0 and ARGV[q + 5] == '1' then
    local su0, su1, su2, st, ru0, ru1, ru2, rt = tally(p + 1, q)
    if ARGV[q + 6] ~= '' then
      local a0, a1, a2 = norm(su0 + ru0 + tonumber(ARGV[q + 10]), su1 + ru1 + tonumber(ARGV[q + 11]), su2 + ru2 + tonumber(ARGV[q + 12]))
      if over(a0, a1, a2, tonumber(ARGV[q + 6]), tonumber(ARGV[q + 7]), tonumber(ARGV[q + 8])) then refused = i - 1 end
    end
    if ARGV[q + 9] ~= '' and st + rt + tonumber(ARGV[q + 13]) > tonumber(ARGV[q + 9]) then refused = i - 1 end
  end
end
if refused >= 0 then
  out[1] = refused
  for _, h in pairs(heads) do if h.changed then write_counters(h) end end
  return table.concat(out, ' ')
end
local field = 'q:' .. rid
for i = 1, n do
  local p = starts[i]
  local q = p + tonumber(ARGV[p])
  local h = heads[ARGV[p + 1]]
  place(h, ARGV[q + 1], ARGV[q + 2], ARGV[q + 3], tonumber(ARGV[q + 4]))
  local u0, u1, u2, t = tonumber(ARGV[q + 10]), tonumber(ARGV[q + 11]), tonumber(ARGV[q + 12]), tonumber(ARGV[q + 13])
  if u0 ~= 0 or u1 ~= 0 or u2 ~= 0 or t ~= 0 then
    h.ru0, h.ru1, h.ru2 = norm(h.ru0 + u0, h.ru1 + u1, h.ru2 + u2); h.rt = h.rt + t
    if h.nl == nil or lease < h.nl then h.nl = lease; h.new_nl = true end
    if h.entry then  -- two slots on one head (never made by the manager) add up
      local a = {}
      for part in string.gmatch(h.entry, '%S+') do a[#a + 1] = tonumber(part) end
      local b0, b1, b2 = norm(a[1] + u0, a[2] + u1, a[3] + u2)
      h.entry = f(b0) .. ' ' .. f(b1) .. ' ' .. f(b2) .. ' ' .. f(a[4] + t) .. ' ' .. fl(lease)
    else
      h.entry = ARGV[q + 14]
    end
  end
end
for _, h in pairs(heads) do
  if h.entry then
    if h.changed then
      write_counters(h)
      redis.call('HSET', h.key, field, h.entry)
    elseif h.new_nl then
      redis.call('HSET', h.key, 'ru0', f(h.ru0), 'ru1', f(h.ru1), 'ru2', f(h.ru2), 'rt', f(h.rt), field, h.entry, 'nl', fl(h.nl))
    else
      redis.call('HSET', h.key, 'ru0', f(h.ru0), 'ru1', f(h.ru1), 'ru2', f(h.ru2), 'rt', f(h.rt), field, h.entry)
    end
  elseif h.changed then
    write_counters(h)
  end
end
return table.concat(out, ' ')
"""
)

# Settle. ARGV: prefix, slot count, reservation ('' when none), then per slot: head count, head names,
# budget, scope key, window key, expires at, alert amount count, their limbs, token alert count, the
# amounts, spend limbs, spend tokens. Answers "su0 su1 su2 st ru0 ru1 ru2 rt low high" per slot.
_SETTLE = (
    _LUA_COMMON
    + r"""
local n = tonumber(ARGV[2])
local rid = ARGV[3]
local field = rid ~= '' and ('q:' .. rid) or nil
local out = {}
local pos = 4
local starts = {}
for i = 1, n do
  local nh = tonumber(ARGV[pos])
  starts[i] = pos
  local first = load(ARGV[pos + 1], field)
  if first.extra and not first.dropped then
    local u0, u1, u2, t = string.match(first.extra, '(%S+) (%S+) (%S+) (%S+)')
    first.ru0, first.ru1, first.ru2 = norm(first.ru0 - tonumber(u0), first.ru1 - tonumber(u1), first.ru2 - tonumber(u2))
    first.rt = first.rt - tonumber(t)
    first.dropped = true
  end
  for j = pos + 2, pos + nh do load(ARGV[j]) end
  local q = pos + nh
  local na = tonumber(ARGV[q + 5])
  local nt = tonumber(ARGV[q + 6 + 3 * na])
  pos = q + 6 + 3 * na + nt + 5
end
for i = 1, n do
  local p = starts[i]
  local nh = tonumber(ARGV[p])
  local q = p + nh
  local h = heads[ARGV[p + 1]]
  local na = tonumber(ARGV[q + 5])
  local tq = q + 6 + 3 * na
  local nt = tonumber(ARGV[tq])
  local s = tq + nt
  h.su0, h.su1, h.su2 = norm(h.su0 + tonumber(ARGV[s + 1]), h.su1 + tonumber(ARGV[s + 2]), h.su2 + tonumber(ARGV[s + 3]))
  h.st = h.st + tonumber(ARGV[s + 4])
  h.changed = true
  place(h, ARGV[q + 1], ARGV[q + 2], ARGV[q + 3], tonumber(ARGV[q + 4]))
  local su0, su1, su2, st, ru0, ru1, ru2, rt, fired = tally(p + 1, p + nh)
  local level = 0
  if su0 ~= 0 or su1 ~= 0 or su2 ~= 0 then
    for j = 0, na - 1 do
      local b = q + 6 + 3 * j
      if over(tonumber(ARGV[b]), tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), su0, su1, su2) then break end
      level = level + 1
    end
  end
  if st ~= 0 then
    local tlevel = 0
    for j = 1, nt do
      if st < tonumber(ARGV[tq + j]) then break end
      tlevel = tlevel + 1
    end
    if tlevel > level then level = tlevel end
  end
  local low, high = 0, 0
  if level > fired then h.lvl = level; low = fired; high = level end
  starts[i] = {p, low, high}
end
for _, h in pairs(heads) do
  if h.changed then h.written = write_counters(h) end
  if h.dropped then redis.call('HDEL', h.key, field) end
end
for i = 1, n do
  local p, low, high = starts[i][1], starts[i][2], starts[i][3]
  local nh = tonumber(ARGV[p])
  local row
  if nh == 1 then row = table.concat(heads[ARGV[p + 1]].written, ' ') else row = sums(p + 1, p + nh) end
  out[i] = row .. ' ' .. low .. ' ' .. high
end
return table.concat(out, ' ')
"""
)

# Release. ARGV: prefix, reservation, then the names of the heads that may hold it.
_RELEASE = (
    _LUA_COMMON
    + r"""
local field = 'q:' .. ARGV[2]
for j = 3, #ARGV do
  local h = load(ARGV[j], field)
  if h.extra and not h.dropped then
    local u0, u1, u2, t = string.match(h.extra, '(%S+) (%S+) (%S+) (%S+)')
    h.ru0, h.ru1, h.ru2 = norm(h.ru0 - tonumber(u0), h.ru1 - tonumber(u1), h.ru2 - tonumber(u2))
    h.rt = h.rt - tonumber(t)
    h.dropped = true
    redis.call('HSET', h.key, 'ru0', f(h.ru0), 'ru1', f(h.ru1), 'ru2', f(h.ru2), 'rt', f(h.rt))
    redis.call('HDEL', h.key, field)
  end
end
return 1
"""
)

# Read. ARGV: prefix, now, then per slot: head count, head names. Answers as reserve does, without refused.
_READ = (
    _LUA_COMMON
    + r"""
local now = tonumber(ARGV[2])
local out = {}
local pos = 3
while pos <= #ARGV do
  local nh = tonumber(ARGV[pos])
  for j = pos + 1, pos + nh do
    local h = load(ARGV[j])
    if purge(h, now) then write_counters(h) end
  end
  out[#out + 1] = sums(pos + 1, pos + nh)
  pos = pos + nh + 1
end
return table.concat(out, ' ')
"""
)

_HEADS = (
    _LUA_COMMON
    + r"""
local budget = ARGV[2]
local now = tonumber(ARGV[3])
local index = P .. 'i:' .. budget
redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
local names = redis.call('ZRANGEBYSCORE', index, '(' .. ARGV[3], '+inf')
local out = {}
for _, name in ipairs(names) do
  local meta = redis.call('HMGET', P .. 'h:' .. name, 's', 'w')
  if meta[1] then
    local h = load(name)
    if purge(h, now) then write_counters(h) end
    out[#out + 1] = name; out[#out + 1] = meta[1]; out[#out + 1] = meta[2]
    out[#out + 1] = h.su0 .. ' ' .. h.su1 .. ' ' .. h.su2; out[#out + 1] = f(h.st)
    out[#out + 1] = h.ru0 .. ' ' .. h.ru1 .. ' ' .. h.ru2; out[#out + 1] = f(h.rt)
    out[#out + 1] = h.lvl; out[#out + 1] = fl(h.x)
  end
end
return out
"""
)

_SCRIPTS = {"reserve": _RESERVE, "settle": _SETTLE, "release": _RELEASE, "read": _READ}


def _script_sha(body: str) -> bytes:
    return hashlib.sha1(body.encode()).hexdigest().encode()


_RESET = r"""
local P = ARGV[1]
local budget = ARGV[2]
local scope_key = ARGV[3]
local index = P .. 'i:' .. budget
local removed = 0
for _, key in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  local s = redis.call('HGET', P .. 'h:' .. key, 's')
  if ARGV[4] == '0' or s == scope_key then
    redis.call('DEL', P .. 'h:' .. key)
    redis.call('ZREM', index, key)
    removed = removed + 1
  end
end
return removed
"""


def _limbs(units: int) -> tuple[int, int, int]:
    return units % _LIMB, (units // _LIMB) % _LIMB, units // (_LIMB * _LIMB)


def _units(text: str | bytes) -> int:
    lo, mid, hi = (int(part) for part in _text(text).split())
    return (hi * _LIMB + mid) * _LIMB + lo


def _text(value: str | bytes | int) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


# -- the wire: commands packed once per plan, sent on a connection of the calling thread ---------------------


def _bulk(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _bulks(values: Sequence[object]) -> bytes:
    return b"".join(_bulk(value if isinstance(value, (str, bytes)) else str(value)) for value in values)


def _number(value: int) -> bytes:
    digits = b"%d" % value
    return b"$%d\r\n%s\r\n" % (len(digits), digits)


def _charge(units: int, tokens: int) -> bytes:
    """A charge as the four script arguments it is (three money limbs and tokens), packed."""
    return (
        _number(units % _LIMB)
        + _number((units // _LIMB) % _LIMB)
        + _number(units // (_LIMB * _LIMB))
        + _number(tokens)
    )


def _slot_text(slot: Slot) -> list[object]:
    return [len(slot.heads), *slot.heads, slot.budget, slot.scope_key, slot.window_key, repr(slot.expires_at)]


class _Packed:
    """The parts of a reserve / settle / release / read command that depend on the slots only."""

    __slots__ = ("count", "read", "release", "reserve", "settle", "slots")

    def __init__(self, slots: Sequence[Slot]) -> None:
        self.slots = slots  # held so the cache key (its id) cannot be reused while cached
        self.count = len(slots)
        reserve: list[bytes] = []
        settle: list[bytes] = []
        for slot in slots:
            limit = ("", "", "") if slot.limit_units is None else _limbs(slot.limit_units)
            tokens = "" if slot.limit_tokens is None else slot.limit_tokens
            reserve.append(_bulks([*_slot_text(slot), int(slot.enforce), *limit, tokens]))
            alerts: list[object] = [len(slot.alert_units)]
            for amount in slot.alert_units:
                alerts.extend(_limbs(amount))
            alerts.append(len(slot.alert_tokens))
            alerts.extend(slot.alert_tokens)
            settle.append(_bulks([*_slot_text(slot), *alerts]))
        self.reserve = reserve  # per slot; each is followed by that slot's charge
        self.settle = settle
        self.release = [_bulk(slot.heads[0]) for slot in slots]
        self.read = b"".join(_bulks([len(slot.heads), *slot.heads]) for slot in slots)


_CACHE_LIMIT = 4096
_IDLE_LIMIT = 8  # connections kept out of the pool between calls, for the threads of this process
_PENDING_LIMIT = 64  # pipelined settles on one connection before their replies are read


def _tallies(text: bytes, count: int, stride: int) -> list[tuple[tuple[int, int, int, int], tuple[int, ...]]]:
    """Per slot: (spent units, spent tokens, reserved units, reserved tokens) and what follows it."""
    values = [int(part) for part in text.split()]
    rows = []
    limb = _LIMB
    for i in range(0, count * stride, stride):
        su0, su1, su2, st, ru0, ru1, ru2, rt = values[i : i + 8]
        rows.append(
            (
                ((su2 * limb + su1) * limb + su0, st, (ru2 * limb + ru1) * limb + ru0, rt),
                tuple(values[i + 8 : i + stride]),
            )
        )
    return rows


def _settle_outcome(text: bytes, count: int) -> SettleOutcome:
    rows = _tallies(text, count, 10)
    return (
        tuple(row for row, _ in rows),
        tuple(tuple(range(low, high)) for _, (low, high) in rows),
    )


class _ReplyError(Exception):
    """Redis answered an error."""


SettleDone = Callable[["SettleOutcome | Exception"], None]


class _Line:
    """A pooled redis-py connection (which did the connecting: address, TLS, auth, database, protocol)
    kept by one thread at a time: commands go out packed once per plan (`send_packed_command`) and
    replies come back through the connection's own parser.

    `pending` holds settlements sent without waiting (pipelined): their replies are read before the
    next command's, so a settle costs no round trip of its own."""

    __slots__ = ("connection", "pending")

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.pending: list[tuple[bytes, int, SettleDone]] = []

    def send(self, command: bytes) -> None:
        self.connection.send_packed_command((command,), check_health=False)

    def reply(self) -> bytes:
        """The next reply: a bulk string's payload or an integer's digits (an error raises `_ReplyError`)."""
        from redis.exceptions import NoScriptError, ResponseError

        try:
            value = self.connection.read_response(disable_decoding=True)
        except NoScriptError as exc:
            raise _ReplyError(f"NOSCRIPT {exc}") from None
        except ResponseError as exc:
            raise _ReplyError(str(exc)) from None
        if value is None:
            return b""
        if isinstance(value, int):
            return str(value).encode()
        if isinstance(value, bytes):
            return value
        raise ConnectionError(f"unexpected reply from Redis: {value!r:.40}")

    def drop(self, error: Exception) -> None:
        """The connection failed: close it (it connects again on its next use); pending settles fail."""
        self.connection.disconnect()
        pending, self.pending = self.pending, []
        for _command, _count, done in pending:
            done(error)


class RedisBackend:
    """Budget counters in the Redis at `url` (or an existing `redis.Redis` client), under `prefix`.

    Each test, tenant or environment can use its own `prefix`; `drop()` deletes every key under it.
    Reserve, settle and release are one script call each (EVALSHA; one round trip), packed by hand
    from arguments prepared once per plan and sent on a connection the calling thread keeps.
    """

    blocking = True

    def __init__(
        self,
        url: str | redis_module.Redis = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "tokentrail:budget:",
        pipeline: bool = False,
    ) -> None:
        try:
            import redis
        except ImportError as exc:
            raise ImportError(
                "the Redis budget backend needs redis-py: pip install 'tokentrail[redis]'"
            ) from exc
        if isinstance(url, str):
            self.url = url
            self._client: redis_module.Redis = redis.Redis.from_url(url)
        else:
            self.url = repr(url)
            self._client = url
        self.prefix = prefix
        self._heads = self._client.register_script(_HEADS)
        self._reset = self._client.register_script(_RESET)
        self._redis_error: type[Exception] = redis.RedisError
        self._no_script: type[Exception] = redis.exceptions.NoScriptError
        self._scripts = {name: (body, _script_sha(body)) for name, body in _SCRIPTS.items()}
        self._prefix_arg = _bulk(prefix)
        self._packed: dict[int, _Packed] = {}
        self._idle: list[_Line] = []  # connections taken from the pool, free for the next call
        self._pid = os.getpid()
        self.pipeline = pipeline
        # The manager settles through this when it is set: pipelined, no round trip of its own.
        self.settle_later: Callable[..., None] | None = self._settle_later if pipeline else None

    # -- the wire -------------------------------------------------------------------------------------------

    def _pack(self, slots: Sequence[Slot]) -> _Packed:
        packed = self._packed.get(id(slots))
        if packed is None or packed.slots is not slots:
            packed = _Packed(slots)
            if len(self._packed) >= _CACHE_LIMIT:
                self._packed.clear()
            self._packed[id(slots)] = packed
        return packed

    def _command(self, script: str, args: bytes, count: int) -> bytes:
        """EVALSHA of `script` with `count` packed arguments after the prefix."""
        return b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$1\r\n0\r\n%s%s" % (
            count + 4,
            self._scripts[script][1],
            self._prefix_arg,
            args,
        )

    def _take(self) -> _Line:
        if self._pid != os.getpid():  # a forked child must not share its parent's sockets
            self._idle, self._pid = [], os.getpid()
        try:
            return self._idle.pop()  # atomic: each thread takes an idle line of its own
        except IndexError:
            return _Line(self._client.connection_pool.get_connection())

    def _give_back(self, line: _Line) -> None:
        if len(self._idle) < _IDLE_LIMIT or line.pending:
            self._idle.append(line)
        else:  # a burst of threads is over: the pool gets the extra connections back
            self._client.connection_pool.release(line.connection)

    def _call(self, script: str, args: bytes, count: int) -> bytes:
        """Run `script` (one round trip, with the replies of pipelined settles read on the way)."""
        command = self._command(script, args, count)
        line = self._take()
        try:
            line.send(command)
            retry = self._drain(line) if line.pending else None
            try:
                reply = line.reply()
            except _ReplyError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
                self._client.script_load(self._scripts[script][0])
                line.send(command)
                reply = line.reply()
            if retry:
                self._retry(line, retry)
            return reply
        except _ReplyError as exc:
            raise StoreError(f"budget counters in Redis ({self.prefix!r}): {exc}") from exc
        except (self._redis_error, OSError) as exc:
            line.drop(exc)
            raise StoreError(f"budget counters in Redis ({self.prefix!r}): {exc}") from exc
        finally:
            self._give_back(line)

    def _drain(self, line: _Line) -> list[tuple[bytes, int, SettleDone]]:
        """Read the replies of the settles pipelined on `line` and hand each its outcome; returns those
        Redis refused for want of the script (send them again with `_retry` once the line is read)."""
        pending, line.pending = line.pending, []
        retry = []
        for command, count, done in pending:
            try:
                text = line.reply()
            except _ReplyError as exc:
                if str(exc).startswith("NOSCRIPT"):
                    retry.append((command, count, done))
                else:
                    done(StoreError(f"budget counters in Redis ({self.prefix!r}): {exc}"))
                continue
            done(_settle_outcome(text, count))
        return retry

    def _retry(self, line: _Line, retry: list[tuple[bytes, int, SettleDone]]) -> None:
        self._client.script_load(self._scripts["settle"][0])
        for command, count, done in retry:
            line.send(command)
            try:
                done(_settle_outcome(line.reply(), count))
            except _ReplyError as exc:
                done(StoreError(f"budget counters in Redis ({self.prefix!r}): {exc}"))

    def flush(self) -> None:
        """Wait for the settles this process pipelined (on idle connections) and deliver their outcomes."""
        lines = []
        while True:
            try:
                lines.append(self._idle.pop())
            except IndexError:
                break
        for line in lines:
            try:
                retry = self._drain(line) if line.pending else None
                if retry:
                    self._retry(line, retry)
            except (self._redis_error, OSError) as exc:
                line.drop(exc)
            finally:
                self._give_back(line)

    def _run(self, script: Any, *args: object) -> Any:
        try:
            return script(args=[self.prefix, *args])
        except self._redis_error as exc:
            raise StoreError(f"budget counters in Redis ({self.prefix!r}): {exc}") from exc

    # -- counters -------------------------------------------------------------------------------------------

    def reserve(
        self,
        reservation: str,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
        lease_until: float,
    ) -> ReserveOutcome:
        packed = self._pack(slots)
        parts = [_bulk(b"%d" % packed.count), _bulk(reservation), _bulk(repr(now))]
        parts.append(_bulk(repr(lease_until)))
        lease = repr(lease_until)
        for static, (units, tokens) in zip(packed.reserve, charges, strict=True):
            parts.append(static)
            parts.append(_charge(units, tokens))
            parts.append(
                _bulk(
                    f"{units % _LIMB} {(units // _LIMB) % _LIMB} {units // _LIMB // _LIMB} {tokens} {lease}"
                )
            )
        count = 4 + sum(15 + len(slot.heads) for slot in slots)
        out = self._call("reserve", b"".join(parts), count)
        refused, _, rest = out.partition(b" ")
        tallies = tuple(row for row, _ in _tallies(rest, packed.count, 8))
        index = int(refused)
        return (None if index < 0 else index, tallies)

    def settle(
        self,
        reservation: str | None,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
    ) -> SettleOutcome:
        args, count = self._settle_args(reservation, slots, charges)
        return _settle_outcome(self._call("settle", args, count), len(slots))

    def _settle_later(
        self,
        reservation: str | None,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
        done: SettleDone,
    ) -> None:
        """`settle` without waiting: the command goes out now, and `done` gets the outcome (or the error)
        when the reply is read, before the next command on the same connection or at `flush()`."""
        args, count = self._settle_args(reservation, slots, charges)
        command = self._command("settle", args, count)
        line = self._take()
        try:
            if len(line.pending) >= _PENDING_LIMIT:
                retry = self._drain(line)
                if retry:
                    self._retry(line, retry)
            line.send(command)
            line.pending.append((command, len(slots), done))
        except (self._redis_error, OSError) as exc:
            line.drop(exc)
            done(StoreError(f"budget counters in Redis ({self.prefix!r}): {exc}"))
        finally:
            self._give_back(line)

    def _settle_args(
        self, reservation: str | None, slots: Sequence[Slot], charges: Sequence[tuple[int, int]]
    ) -> tuple[bytes, int]:
        packed = self._pack(slots)
        parts = [_bulk(b"%d" % packed.count), _bulk(reservation or "")]
        count = 2
        for slot, static, (units, tokens) in zip(slots, packed.settle, charges, strict=True):
            parts.append(static)
            parts.append(_charge(units, tokens))
            count += len(slot.heads) + 11 + 3 * len(slot.alert_units) + len(slot.alert_tokens)
        return b"".join(parts), count

    def release(self, reservation: str, slots: Sequence[Slot], now: float) -> None:
        packed = self._pack(slots)
        self._call("release", _bulk(reservation) + b"".join(packed.release), 1 + packed.count)

    def read(self, slots: Sequence[Slot], now: float) -> list[Tally]:
        if self.pipeline:
            self.flush()
        packed = self._pack(slots)
        count = 1 + sum(1 + len(slot.heads) for slot in slots)
        out = self._call("read", _bulk(repr(now)) + packed.read, count)
        return [Tally._make(row) for row, _ in _tallies(out, packed.count, 8)]

    def heads(self, budget: str, now: float) -> list[HeadRow]:
        if self.pipeline:
            self.flush()
        out = self._run(self._heads, budget, repr(now))
        rows = []
        for i in range(0, len(out), 9):
            key, scope_key, window_key, su, st, ru, rt, level, expires = out[i : i + 9]
            rows.append(
                HeadRow(
                    _text(key),
                    budget,
                    _text(scope_key),
                    _text(window_key),
                    _units(su),
                    int(_text(st)),
                    _units(ru),
                    int(_text(rt)),
                    int(level),
                    float(_text(expires)),
                )
            )
        return rows

    # -- definitions and operator actions ---------------------------------------------------------------

    def register(self, definitions: Mapping[str, Mapping[str, Any]]) -> None:
        if definitions:
            mapping = {name: json.dumps(dict(d), sort_keys=True) for name, d in definitions.items()}
            self._client.hset(self.prefix + "defs", mapping=mapping)  # type: ignore[arg-type]

    def definitions(self) -> dict[str, dict[str, Any]]:
        stored: dict[Any, Any] = self._client.hgetall(self.prefix + "defs")
        return {_text(name): json.loads(text) for name, text in stored.items()}

    def set_limits(self, budget: str, limits: tuple[int | None, int | None] | None) -> None:
        if limits is None:
            self._client.hdel(self.prefix + "limits", budget)
            return
        text = json.dumps([None if v is None else str(v) for v in limits])
        self._client.hset(self.prefix + "limits", budget, text)

    def limits(self) -> dict[str, tuple[int | None, int | None]]:
        stored: dict[Any, Any] = self._client.hgetall(self.prefix + "limits")
        found = {}
        for name, text in stored.items():
            units, tokens = json.loads(text)
            found[_text(name)] = (
                None if units is None else int(units),
                None if tokens is None else int(tokens),
            )
        return found

    def reset(self, budget: str, scope_key: str | None = None) -> int:
        if self.pipeline:
            self.flush()
        return int(self._run(self._reset, budget, scope_key or "", "0" if scope_key is None else "1"))

    def drop(self) -> int:
        """Delete every key under this backend's prefix (tests and tear-downs)."""
        removed = 0
        for key in self._client.scan_iter(match=self.prefix.replace("*", r"\*") + "*", count=1000):
            removed += int(self._client.delete(key))
        return removed

    def close(self) -> None:
        self.flush()
        idle, self._idle = self._idle, []
        for line in idle:
            line.connection.disconnect()
        self._client.close()

    def __repr__(self) -> str:
        return f"RedisBackend(prefix={self.prefix!r})"
