-- The authorization_code exchange (with PKCE). Codes were minted beforehand through the real
-- browser flow (bench/harness.py): thread i of n takes lines i, i+n, i+2n, ... of CODES_FILE.
-- Running out of codes fails the request, so it shows as an error.
-- Env: TOKEN_PATH, CLIENT_ID, CLIENT_SECRET, CODES_FILE, BENCH_THREADS, REDIRECT_URI, CODE_VERIFIER.
dofile(os.getenv('PEER_BENCH_DIR') .. '/lua/common.lua')

function init(args)
  local n, i, k = tonumber(env('BENCH_THREADS')), thread_index, 0
  codes, next_code = {}, 1
  for line in io.lines(env('CODES_FILE')) do
    if line ~= '' then
      k = k + 1
      if (k - 1) % n == i - 1 then table.insert(codes, line) end
    end
  end
  headers = { ['Authorization'] = basic_auth(),
              ['Content-Type'] = 'application/x-www-form-urlencoded' }
  tail = '&redirect_uri=' .. form_encode(env('REDIRECT_URI')) ..
         '&code_verifier=' .. form_encode(env('CODE_VERIFIER'))
  path = env('TOKEN_PATH')
end

function request()
  local code = codes[next_code] or 'exhausted'
  next_code = next_code + 1
  return wrk.format('POST', path, headers, 'grant_type=authorization_code&code=' .. form_encode(code) .. tail)
end

function response(status, headers, body)
  if status == 200 and not body:match('"access_token"') then unparsed = unparsed + 1 end
end
