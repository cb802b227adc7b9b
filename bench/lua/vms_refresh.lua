-- POST /v1/vms/auth/refresh/{videoManagerId}: one rotating chain per connection, like
-- refresh.lua. Env: VMS_TOKENS_FILE (one refresh token a line), VIDEO_MANAGER.
dofile(os.getenv('PEER_BENCH_DIR') .. '/lua/common.lua')

function init(args)
  token = read_line(env('VMS_TOKENS_FILE'), thread_index)
  headers = { ['Content-Type'] = 'application/json' }
  path = '/v1/vms/auth/refresh/' .. env('VIDEO_MANAGER')
end

function request()
  return wrk.format('POST', path, headers, '{"refreshToken":"' .. token .. '"}')
end

function response(status, headers, body)
  if status == 200 then
    local next_token = body:match('"refreshToken"%s*:%s*"([^"]+)"')
    if next_token then token = next_token else unparsed = unparsed + 1 end
  end
end
