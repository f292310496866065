-- wrk script for scripts/bench-load.sh: every request carries a token from $BENCH_TOKENS (one per
-- line). BENCH_MODE=rotate cycles through the first $BENCH_ROTATE tokens (both threads, half a
-- cycle apart); BENCH_MODE=unique gives each thread its own disjoint half of the file, in order, so
-- no token is sent twice as long as the run needs fewer requests than the file has tokens (the
-- summary line says whether any token was reused). BENCH_MODE=flood alternates a valid token (the
-- file, cycled) with a never-seen forged one (the valid token with 8 signature characters replaced
-- by a per-thread counter: well-formed, distinct, and a bad signature). The path comes from wrk's URL.
local mode = os.getenv("BENCH_MODE") or "rotate"
local limit = tonumber(os.getenv("BENCH_ROTATE") or "0")
local toks = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do
  toks[#toks + 1] = line
  if mode == "rotate" and limit > 0 and #toks >= limit then break end
end

local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
  thread:set("id", #threads)
end

local i, lo, hi = 0, 1, #toks
local reused = 0
function init(args)
  local n = id or 1
  if mode == "unique" then
    local half = math.floor(#toks / 2)
    lo, hi = (n - 1) * half + 1, n * half
    i = lo - 1
  else
    i = (n - 1) * math.floor(#toks / 2)
  end
end

local b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local forged = 0
local function forge(tok)
  forged = forged + 1
  local n, enc = forged * 2 + ((id or 1) - 1), {}
  for k = 1, 8 do
    local d = n % 64
    enc[k] = b64:sub(d + 1, d + 1)
    n = math.floor(n / 64)
  end
  local sig = tok:find("%.[^.]*$")
  return tok:sub(1, sig + 20) .. table.concat(enc) .. tok:sub(sig + 29)
end

local flip = false
function request()
  if mode == "flood" then
    flip = not flip
    i = i % #toks + 1
    local t = flip and toks[i] or forge(toks[i])
    return wrk.format(nil, nil, {["Authorization"] = "Bearer " .. t})
  end
  if mode == "unique" then
    i = i + 1
    if i > hi then i, reused = lo, reused + 1 end
  else
    i = i % #toks + 1
  end
  return wrk.format(nil, nil, {["Authorization"] = "Bearer " .. toks[i]})
end

function done(summary, latency, requests)
  local wraps = 0
  for _, t in ipairs(threads) do wraps = wraps + (t:get("reused") or 0) end
  if mode == "unique" then
    io.write(string.format("tokens: %d distinct available, %d requests, reused: %s\n",
      #toks, summary.requests, wraps > 0 and "yes" or "no"))
  end
end
