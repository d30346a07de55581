-- issue.lua — wrk script for S3: every request issues a queue token for a user
-- not seen before in this run. BENCH_TOKENS: "userId accessToken" lines (bench/seed.c);
-- BENCH_SKIP / BENCH_COUNT pick the slice of the file this wrk process may use;
-- wrk thread k of n takes every n-th line of the slice. BENCH_CONCERT: the concert.
-- At the end prints "pool_used N of M": requests beyond the pool would re-issue
-- (200, cheaper), so a run whose pool ran out is reported by bench/run.sh.
local toks = {}
local n = 0
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("tid", #threads)
end

function init(args)
  local nth = tonumber(os.getenv("BENCH_NTHREADS") or "2")
  local skip = tonumber(os.getenv("BENCH_SKIP") or "0")
  local count = tonumber(os.getenv("BENCH_COUNT") or "0")
  local k = 0
  for line in io.lines(os.getenv("BENCH_TOKENS")) do
    if k >= skip and (count == 0 or k < skip + count) and (k - skip) % nth == tid - 1 then
      toks[#toks + 1] = "Bearer " .. string.match(line, "^%d+ (.*)$")
    end
    k = k + 1
    if count > 0 and k >= skip + count then break end
  end
  npool = #toks
  used = 0
  wrk.method = "POST"
  wrk.path = "/api/v1/concerts/" .. os.getenv("BENCH_CONCERT") .. "/queue/tokens"
end

function request()
  n = n + 1
  used = n
  local t = toks[(n - 1) % #toks + 1]
  return wrk.format(nil, nil, { ["Authorization"] = t, ["Content-Length"] = "0" })
end

function done(summary, latency, requests)
  local used, pool = 0, 0
  for _, t in ipairs(threads) do
    used = used + (t:get("used") or 0)
    pool = pool + t:get("npool")
  end
  io.write(string.format("pool_used %d of %d\n", used, pool))
end
