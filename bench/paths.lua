-- wrk script: each request is a random line of a file of "PATH<TAB>TOKEN" (TOKEN may be empty),
-- so every connection asks for random patients as the caller allowed to see them.
-- Usage: wrk -s bench/paths.lua URL -- FILE
local lines = {}

function init(args)
  for line in io.lines(args[1]) do
    local path, token = line:match("^([^\t]+)\t?(.*)$")
    if path then
      lines[#lines + 1] = { path = path, token = token }
    end
  end
  if #lines == 0 then
    error("no request lines in " .. tostring(args[1]))
  end
  math.randomseed(os.time() + (id or 0))
end

local thread_id = 0
function setup(thread)
  thread_id = thread_id + 1
  thread:set("id", thread_id)
end

function request()
  local l = lines[math.random(#lines)]
  local headers = { ["Accept"] = "application/fhir+json" }
  if l.token ~= "" then
    headers["Authorization"] = "Bearer " .. l.token
  end
  return wrk.format("GET", l.path, headers)
end
