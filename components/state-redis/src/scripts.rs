//! Lua scripts that make each write atomic on the Redis server.
//!
//! Items use Dapr's layout: a hash with `data` (the value) and `version` (an integer that is
//! the ETag). ETag and first-write checks run inside the script, so no other client can
//! write between the check and the write.

use std::sync::LazyLock;

use redis::Script;

/// The error code scripts raise when an ETag or first-write condition fails.
pub const ETAG_MISMATCH: &str = "ETAG_MISMATCH";

/// KEYS[1] = key. Returns `{}` when missing, else `{data, version, pttl}`; a plain string
/// written by another client reads with an empty version.
pub static GET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local kind = redis.call("TYPE", KEYS[1])["ok"]
if kind == "none" then return {} end
local pttl = redis.call("PTTL", KEYS[1])
if kind == "string" then return {redis.call("GET", KEYS[1]), "", pttl} end
if kind ~= "hash" then
  return redis.error_reply("WRONGTYPE key " .. KEYS[1] .. " holds a " .. kind .. ", not a state item")
end
local data = redis.call("HGET", KEYS[1], "data")
local version = redis.call("HGET", KEYS[1], "version")
if not data or not version then
  return redis.error_reply("BADITEM required hash field 'data' or 'version' was not found in " .. KEYS[1])
end
return {data, version, pttl}
"#,
    )
});

/// Shared Lua helpers for writes: `check` validates one step, `apply_*` perform it.
const WRITE_HELPERS: &str = r#"
local function current_version(key)
  if redis.call("TYPE", key)["ok"] == "hash" then
    return redis.call("HGET", key, "version") or false
  end
  return false
end
-- etag: "" for none; first_write: "1" to require a missing key when no etag is given.
local function check(key, current, etag, first_write)
  if etag ~= "" then
    if not current or current ~= etag then
      return redis.error_reply("ETAG_MISMATCH " .. key)
    end
  elseif first_write == "1" and current then
    return redis.error_reply("ETAG_MISMATCH " .. key)
  end
  return nil
end
-- ttl: "" keeps any expiry, "-1" removes it, otherwise seconds.
local function apply_set(key, data, ttl)
  local kind = redis.call("TYPE", key)["ok"]
  if kind ~= "hash" and kind ~= "none" then redis.call("DEL", key) end
  redis.call("HSET", key, "data", data)
  local version = redis.call("HINCRBY", key, "version", 1)
  if ttl == "-1" then
    redis.call("PERSIST", key)
  elseif ttl ~= "" then
    redis.call("EXPIRE", key, ttl)
  end
  return version
end
"#;

/// KEYS[1] = key; ARGV = etag, data, first-write flag, ttl. Returns the new version.
pub static SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{WRITE_HELPERS}
local failed = check(KEYS[1], current_version(KEYS[1]), ARGV[1], ARGV[3])
if failed then return failed end
return apply_set(KEYS[1], ARGV[2], ARGV[4])
"#
    ))
});

/// KEYS[1] = key; ARGV[1] = etag or "". Returns the number of keys removed.
pub static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{WRITE_HELPERS}
local failed = check(KEYS[1], current_version(KEYS[1]), ARGV[1], "0")
if failed then return failed end
return redis.call("DEL", KEYS[1])
"#
    ))
});

/// Number of ARGV entries per transaction step.
pub const TRANSACTION_ARGS_PER_STEP: usize = 5;

/// KEYS[i] = key of step i; ARGV per step = op ("upsert"|"delete"), etag, data, first-write
/// flag, ttl. Checks every step against the state earlier steps would leave, then applies
/// all of them; a failed check applies nothing.
pub static TRANSACTION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{WRITE_HELPERS}
local staged = {{}}
for i = 1, #KEYS do
  local key = KEYS[i]
  local base = (i - 1) * {TRANSACTION_ARGS_PER_STEP}
  local op = ARGV[base + 1]
  local current
  if staged[key] ~= nil then current = staged[key] else current = current_version(key) end
  local failed = check(key, current, ARGV[base + 2], op == "upsert" and ARGV[base + 4] or "0")
  if failed then return failed end
  if op == "upsert" then
    staged[key] = tostring((current and tonumber(current) or 0) + 1)
  else
    staged[key] = false
  end
end
for i = 1, #KEYS do
  local base = (i - 1) * {TRANSACTION_ARGS_PER_STEP}
  if ARGV[base + 1] == "upsert" then
    apply_set(KEYS[i], ARGV[base + 3], ARGV[base + 5])
  else
    redis.call("DEL", KEYS[i])
  end
end
return #KEYS
"#
    ))
});
