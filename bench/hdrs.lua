-- hdrs.lua — wrk script: each request carries the next header set of a file,
-- round robin per wrk thread (threads start at different offsets).
-- BENCH_HDRS: file of lines "index<TAB>status<TAB>Header: v<TAB>Header: v" as
-- written by `loadgen issue --save` (the first two fields are skipped).
-- BENCH_OFFSET (0): shifts the starting sets, so that two wrk processes (one per
-- scale-out instance) do not walk the file in step.
local sets = {}
local i = 0
local threads = {}
local nthreads = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
end

function init(args)
  local path = os.getenv("BENCH_HDRS")
  for line in io.lines(path) do
    local fields = {}
    for f in string.gmatch(line, "[^\t]+") do fields[#fields + 1] = f end
    local h = {}
    for k = 3, #fields do
      local name, value = string.match(fields[k], "^([^:]+):%s*(.*)$")
      h[name] = value
    end
    sets[#sets + 1] = h
  end
  i = ((tid or 1) * 7919 + tonumber(os.getenv("BENCH_OFFSET") or "0")) % #sets
end

function request()
  i = i % #sets + 1
  return wrk.format(nil, nil, sets[i])
end
