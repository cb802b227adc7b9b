-- POST /v1/vms/auth/login (JSON), argon2id-bound like the password grant.
-- Env: BENCH_USERNAME, BENCH_PASSWORD.
dofile(os.getenv('PEER_BENCH_DIR') .. '/lua/common.lua')

function init(args)
  headers = { ['Content-Type'] = 'application/json' }
  body = '{"username":"' .. env('BENCH_USERNAME') .. '","password":"' .. env('BENCH_PASSWORD') .. '"}'
end

function request() return wrk.format('POST', '/v1/vms/auth/login', headers, body) end

function response(status, headers, body)
  if status == 200 and not body:match('"accessToken"') then unparsed = unparsed + 1 end
end
