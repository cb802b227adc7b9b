-- POST /api/ Auth.CreateApiToken (Flussonic's JSON-RPC): one stream token per call, as a
-- portal mints one per viewer. Env: STREAM_ADMIN_TOKEN (an access token with keyframe:tokens
-- of an owner).
dofile(os.getenv('PEER_BENCH_DIR') .. '/lua/common.lua')

function init(args)
  headers = { ['Content-Type'] = 'application/json', ['Authorization'] = 'Bearer ' .. env('STREAM_ADMIN_TOKEN') }
  n = 0
end

function request()
  n = n + 1
  local body = '{"jsonrpc":"2.0","method":"Auth.CreateApiToken","id":' .. n ..
    ',"params":{"stream":"cam' .. (n % 50) .. '","ttl":600,"live":true,"dvr":true,"from":1700000000}}'
  return wrk.format('POST', '/api/', headers, body)
end

function response(status, headers, body)
  if status == 200 and not body:match('"result"%s*:%s*"ey') then unparsed = unparsed + 1 end
end
