-- The password grant: argon2id-bound by design (OWASP parameters), reported, not tuned.
-- Env: TOKEN_PATH, CLIENT_ID, CLIENT_SECRET, BENCH_USERNAME, BENCH_PASSWORD.
dofile(os.getenv('PEER_BENCH_DIR') .. '/lua/common.lua')

function init(args)
  headers = { ['Authorization'] = basic_auth(),
              ['Content-Type'] = 'application/x-www-form-urlencoded' }
  body = 'grant_type=password&username=' .. form_encode(env('BENCH_USERNAME')) ..
         '&password=' .. form_encode(env('BENCH_PASSWORD'))
  path = env('TOKEN_PATH')
end

function request() return wrk.format('POST', path, headers, body) end

function response(status, headers, body)
  if status == 200 and not body:match('"access_token"') then unparsed = unparsed + 1 end
end
