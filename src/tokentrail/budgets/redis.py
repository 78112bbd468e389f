"""Budget counters in Redis (redis-py): one Lua script per reserve, settle and release, so each is atomic
on the server, and every key expires with its window. Machines sharing the Redis share the limits.
Install with `pip install 'tokentrail[redis]'`.

Keys (all under `prefix`): `h:<head>` a hash of counters, `e:<head>` a sorted set of live reservations
by lease, `r:<reservation>` a hash of what the reservation holds in each head, `i:<budget>` an index of
the budget's heads, `defs` and `limits` hashes for definitions and operator overrides. Lua numbers are
doubles, so money travels as three exact limbs of 10**12 (10**-24, 10**-12 and 1 USD).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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

local function norm(a)
  local lo, mid, hi = a[1], a[2], a[3]
  if lo >= B then local c = math.floor(lo / B); lo = lo - c * B; mid = mid + c end
  if lo < 0 then local c = math.ceil(-lo / B); lo = lo + c * B; mid = mid - c end
  if mid >= B then local c = math.floor(mid / B); mid = mid - c * B; hi = hi + c end
  if mid < 0 then local c = math.ceil(-mid / B); mid = mid + c * B; hi = hi - c end
  return {lo, mid, hi}
end
local function add(a, b) return norm({a[1] + b[1], a[2] + b[2], a[3] + b[3]}) end
local function sub(a, b) return norm({a[1] - b[1], a[2] - b[2], a[3] - b[3]}) end
local function gt(a, b)
  if a[3] ~= b[3] then return a[3] > b[3] end
  if a[2] ~= b[2] then return a[2] > b[2] end
  return a[1] > b[1]
end
local function zero(a) return a[1] == 0 and a[2] == 0 and a[3] == 0 end
local function f(x) return string.format('%.0f', x) end  -- integers (limbs, tokens)
local function fl(x) return string.format('%.17g', x) end  -- times (epoch seconds)
local function money(a) return f(a[1]) .. ' ' .. f(a[2]) .. ' ' .. f(a[3]) end
local function parse(text)
  local out = {}
  for part in string.gmatch(text, '%S+') do out[#out + 1] = tonumber(part) end
  return out
end

-- Slots arrive flat in ARGV (no JSON to decode): see _slot_args() in Python.
local pos = 0
local function nxt() pos = pos + 1; return ARGV[pos] end
local function limbs() return {tonumber(nxt()), tonumber(nxt()), tonumber(nxt())} end
local function read_slots()
  local slots = {}
  for i = 1, tonumber(nxt()) do
    local s = {h = {}, au = {}, at = {}}
    for j = 1, tonumber(nxt()) do s.h[j] = nxt() end
    s.b = nxt(); s.s = nxt(); s.w = nxt(); s.x = tonumber(nxt()); s.e = nxt() == '1'
    if nxt() == '1' then s.lu = limbs() end
    local lt = nxt()
    if lt ~= '' then s.lt = tonumber(lt) end
    s.u = limbs(); s.t = tonumber(nxt())
    for j = 1, tonumber(nxt()) do s.au[j] = limbs() end
    for j = 1, tonumber(nxt()) do s.at[j] = tonumber(nxt()) end
    slots[i] = s
  end
  return slots
end

local heads = {}
local order = {}
local function head(key, slot)
  local h = heads[key]
  if h then return h end
  local v = redis.call('HMGET', P .. 'h:' .. key, 'su0', 'su1', 'su2', 'st', 'ru0', 'ru1', 'ru2', 'rt', 'lvl', 'nl', 'x')
  h = {
    key = key,
    su = {tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0}, st = tonumber(v[4]) or 0,
    ru = {tonumber(v[5]) or 0, tonumber(v[6]) or 0, tonumber(v[7]) or 0}, rt = tonumber(v[8]) or 0,
    lvl = tonumber(v[9]) or 0, nl = tonumber(v[10]), x = tonumber(v[11]) or 0,
    exists = v[11] ~= false, dirty = false, slot = slot, had_nl = v[10] ~= false, moved = false,
  }
  heads[key] = h
  order[#order + 1] = key
  return h
end

local function purge(h, now)
  if h.nl == nil or h.nl > now then return end
  local ekey = P .. 'e:' .. h.key
  local gone = redis.call('ZRANGEBYSCORE', ekey, '-inf', now)
  for _, rid in ipairs(gone) do
    local held = redis.call('HGET', P .. 'r:' .. rid, h.key)
    if held then
      local a = parse(held)
      h.ru = sub(h.ru, {a[1], a[2], a[3]})
      h.rt = h.rt - a[4]
      redis.call('HDEL', P .. 'r:' .. rid, h.key)
    end
  end
  redis.call('ZREMRANGEBYSCORE', ekey, '-inf', now)
  local first = redis.call('ZRANGE', ekey, 0, 0, 'WITHSCORES')
  h.nl = tonumber(first[2])
  h.dirty = true
end

local function tally(slot)
  local su, st, ru, rt = {0, 0, 0}, 0, {0, 0, 0}, 0
  local fired = 0
  for _, key in ipairs(slot.h) do
    local h = heads[key]
    su = add(su, h.su); st = st + h.st; ru = add(ru, h.ru); rt = rt + h.rt
    if h.lvl > fired then fired = h.lvl end
  end
  return su, st, ru, rt, fired
end

local function save(h)
  if not h.dirty then return end
  local hkey = P .. 'h:' .. h.key
  local s = h.slot
  if h.nl then
    redis.call('HSET', hkey, 'su0', f(h.su[1]), 'su1', f(h.su[2]), 'su2', f(h.su[3]), 'st', f(h.st),
      'ru0', f(h.ru[1]), 'ru1', f(h.ru[2]), 'ru2', f(h.ru[3]), 'rt', f(h.rt), 'lvl', h.lvl, 'nl', fl(h.nl))
  else
    redis.call('HSET', hkey, 'su0', f(h.su[1]), 'su1', f(h.su[2]), 'su2', f(h.su[3]), 'st', f(h.st),
      'ru0', f(h.ru[1]), 'ru1', f(h.ru[2]), 'ru2', f(h.ru[3]), 'rt', f(h.rt), 'lvl', h.lvl)
    if h.had_nl then redis.call('HDEL', hkey, 'nl') end
  end
  if not h.exists then
    redis.call('HSET', hkey, 'b', s.b, 's', s.s, 'w', s.w)  -- only heads[1] of a slot is ever created
  end
  if not h.exists or h.moved then  -- the head's expiry is new or later: keys and index follow it
    redis.call('HSET', hkey, 'x', fl(h.x))
    redis.call('PEXPIREAT', hkey, math.floor(h.x * 1000))
    redis.call('ZADD', P .. 'i:' .. s.b, h.x, h.key)
  end
  h.exists = true
  h.moved = false
end

local function load_slots(slots)
  for _, slot in ipairs(slots) do
    for _, key in ipairs(slot.h) do head(key, slot) end
  end
end

local function drop_entries(rid)
  local rkey = P .. 'r:' .. rid
  local held = redis.call('HGETALL', rkey)
  for i = 1, #held, 2 do
    local key = held[i]
    if redis.call('ZREM', P .. 'e:' .. key, rid) == 1 then
      local h = heads[key]
      if h then
        local a = parse(held[i + 1])
        h.ru = sub(h.ru, {a[1], a[2], a[3]})
        h.rt = h.rt - a[4]
        h.dirty = true
      end
    end
  end
  redis.call('DEL', rkey)
end
"""

_RESERVE = (
    _LUA_COMMON
    + r"""
local rid = ARGV[2]
local now = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local grace = tonumber(ARGV[5])
pos = 5
local slots = read_slots()
load_slots(slots)
for _, key in ipairs(order) do purge(heads[key], now) end
local out = {-1}
local refused = -1
for i, slot in ipairs(slots) do
  local su, st, ru, rt = tally(slot)
  out[#out + 1] = money(su); out[#out + 1] = f(st); out[#out + 1] = money(ru); out[#out + 1] = f(rt)
  if refused < 0 and slot.e then
    if slot.lu and gt(add(add(su, ru), slot.u), slot.lu) then refused = i - 1 end
    if slot.lt and st + rt + slot.t > slot.lt then refused = i - 1 end
  end
end
if refused >= 0 then
  out[1] = refused
  for _, key in ipairs(order) do save(heads[key]) end
  return out
end
for _, slot in ipairs(slots) do
  local h = heads[slot.h[1]]
  if h.x < slot.x then h.x = slot.x; h.moved = true; h.dirty = true end
  if not h.exists then h.dirty = true end
  if not zero(slot.u) or slot.t ~= 0 then
    h.ru = add(h.ru, slot.u); h.rt = h.rt + slot.t
    if h.nl == nil or lease < h.nl then h.nl = lease end
    h.dirty = true
    redis.call('ZADD', P .. 'e:' .. h.key, lease, rid)
    redis.call('PEXPIREAT', P .. 'e:' .. h.key, math.floor(math.max(h.x, lease + grace) * 1000))
    redis.call('HSET', P .. 'r:' .. rid, h.key, money(slot.u) .. ' ' .. f(slot.t))
    redis.call('PEXPIREAT', P .. 'r:' .. rid, math.floor((lease + grace) * 1000))
  end
end
for _, key in ipairs(order) do save(heads[key]) end
return out
"""
)

_SETTLE = (
    _LUA_COMMON
    + r"""
local rid = ARGV[2]
local now = tonumber(ARGV[3])
pos = 3
local slots = read_slots()
load_slots(slots)
if rid ~= '' then drop_entries(rid) end
local out = {}
for _, slot in ipairs(slots) do
  local h = heads[slot.h[1]]
  h.su = add(h.su, slot.u); h.st = h.st + slot.t
  if h.x < slot.x then h.x = slot.x; h.moved = true end
  h.dirty = true
  local su, st, ru, rt, fired = tally(slot)
  local level = 0
  for _, amount in ipairs(slot.au) do
    if zero(su) or gt(amount, su) then break end
    level = level + 1
  end
  local tlevel = 0
  for _, amount in ipairs(slot.at) do
    if st == 0 or st < amount then break end
    tlevel = tlevel + 1
  end
  if tlevel > level then level = tlevel end
  local low, high = 0, 0
  if level > fired then h.lvl = level; low = fired; high = level end
  out[#out + 1] = money(su); out[#out + 1] = f(st); out[#out + 1] = money(ru); out[#out + 1] = f(rt)
  out[#out + 1] = low; out[#out + 1] = high
end
for _, key in ipairs(order) do save(heads[key]) end
return out
"""
)

_RELEASE = (
    _LUA_COMMON
    + r"""
local rid = ARGV[2]
pos = 2
local slots = read_slots()
load_slots(slots)
drop_entries(rid)
for _, key in ipairs(order) do save(heads[key]) end
return 1
"""
)

_READ = (
    _LUA_COMMON
    + r"""
local now = tonumber(ARGV[2])
pos = 2
local slots = read_slots()
load_slots(slots)
for _, key in ipairs(order) do purge(heads[key], now) end
local out = {}
for _, slot in ipairs(slots) do
  local su, st, ru, rt = tally(slot)
  out[#out + 1] = money(su); out[#out + 1] = f(st); out[#out + 1] = money(ru); out[#out + 1] = f(rt)
end
for _, key in ipairs(order) do save(heads[key]) end
return out
"""
)

_HEADS = (
    _LUA_COMMON
    + r"""
local budget = ARGV[2]
local now = tonumber(ARGV[3])
local index = P .. 'i:' .. budget
redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
local keys = redis.call('ZRANGEBYSCORE', index, '(' .. ARGV[3], '+inf')
local out = {}
for _, key in ipairs(keys) do
  local meta = redis.call('HMGET', P .. 'h:' .. key, 'b', 's', 'w')
  if meta[1] then
    local h = head(key, {b = meta[1], s = meta[2], w = meta[3]})
    purge(h, now)
    save(h)
    out[#out + 1] = key; out[#out + 1] = meta[2]; out[#out + 1] = meta[3]
    out[#out + 1] = money(h.su); out[#out + 1] = f(h.st); out[#out + 1] = money(h.ru); out[#out + 1] = f(h.rt)
    out[#out + 1] = h.lvl; out[#out + 1] = fl(h.x)
  end
end
return out
"""
)

_RESET = r"""
local P = ARGV[1]
local budget = ARGV[2]
local scope_key = ARGV[3]
local index = P .. 'i:' .. budget
local removed = 0
for _, key in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  local s = redis.call('HGET', P .. 'h:' .. key, 's')
  if ARGV[4] == '0' or s == scope_key then
    redis.call('DEL', P .. 'h:' .. key, P .. 'e:' .. key)
    redis.call('ZREM', index, key)
    removed = removed + 1
  end
end
return removed
"""


def _limbs(units: int) -> list[int]:
    return [units % _LIMB, (units // _LIMB) % _LIMB, units // (_LIMB * _LIMB)]


def _units(text: str | bytes) -> int:
    lo, mid, hi = (int(part) for part in _text(text).split())
    return (hi * _LIMB + mid) * _LIMB + lo


def _text(value: str | bytes | int) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _slot_args(slots: Sequence[Slot], charges: Sequence[tuple[int, int]] | None) -> list[object]:
    """Slots as flat script arguments, in the order `read_slots()` reads them."""
    args: list[object] = [len(slots)]
    for index, slot in enumerate(slots):
        units, tokens = charges[index] if charges is not None else (0, 0)
        args.append(len(slot.heads))
        args.extend(slot.heads)
        args.extend((slot.budget, slot.scope_key, slot.window_key, repr(slot.expires_at), int(slot.enforce)))
        if slot.limit_units is None:
            args.append(0)
        else:
            args.append(1)
            args.extend(_limbs(slot.limit_units))
        args.append("" if slot.limit_tokens is None else slot.limit_tokens)
        args.extend(_limbs(units))
        args.append(tokens)
        args.append(len(slot.alert_units))
        for amount in slot.alert_units:
            args.extend(_limbs(amount))
        args.append(len(slot.alert_tokens))
        args.extend(slot.alert_tokens)
    return args


def _tallies(values: Sequence[Any], count: int, stride: int = 4) -> list[Tally]:
    found = []
    for i in range(count):
        su, st, ru, rt = values[i * stride : i * stride + 4]
        found.append(Tally(_units(su), int(_text(st)), _units(ru), int(_text(rt))))
    return found


class RedisBackend:
    """Budget counters in the Redis at `url` (or an existing `redis.Redis` client), under `prefix`.

    Each test, tenant or environment can use its own `prefix`; `drop()` deletes every key under it.
    """

    blocking = True

    def __init__(
        self,
        url: str | redis_module.Redis = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "tokentrail:budget:",
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
        self._reserve = self._client.register_script(_RESERVE)
        self._settle = self._client.register_script(_SETTLE)
        self._release = self._client.register_script(_RELEASE)
        self._read = self._client.register_script(_READ)
        self._heads = self._client.register_script(_HEADS)
        self._reset = self._client.register_script(_RESET)
        self._redis_error: type[Exception] = redis.RedisError

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
        out = self._run(
            self._reserve, reservation, repr(now), repr(lease_until), "3600", *_slot_args(slots, charges)
        )
        refused = int(out[0])
        return (None if refused < 0 else refused, tuple(_tallies(out[1:], len(slots))))

    def settle(
        self,
        reservation: str | None,
        slots: Sequence[Slot],
        charges: Sequence[tuple[int, int]],
        now: float,
    ) -> SettleOutcome:
        out = self._run(self._settle, reservation or "", repr(now), *_slot_args(slots, charges))
        tallies = _tallies(out, len(slots), stride=6)
        crossed = tuple(tuple(range(int(out[i * 6 + 4]), int(out[i * 6 + 5]))) for i in range(len(slots)))
        return (tuple(tallies), crossed)

    def release(self, reservation: str, slots: Sequence[Slot], now: float) -> None:
        self._run(self._release, reservation, *_slot_args(slots, None))

    def read(self, slots: Sequence[Slot], now: float) -> list[Tally]:
        return _tallies(self._run(self._read, repr(now), *_slot_args(slots, None)), len(slots))

    def heads(self, budget: str, now: float) -> list[HeadRow]:
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
        return int(self._run(self._reset, budget, scope_key or "", "0" if scope_key is None else "1"))

    def drop(self) -> int:
        """Delete every key under this backend's prefix (tests and tear-downs)."""
        removed = 0
        for key in self._client.scan_iter(match=self.prefix.replace("*", r"\*") + "*", count=1000):
            removed += int(self._client.delete(key))
        return removed

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"RedisBackend(prefix={self.prefix!r})"
