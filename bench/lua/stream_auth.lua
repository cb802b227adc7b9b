-- GET /api/stream-auth: Flussonic's call-back on each play of a viewer, with the parameters
-- Flussonic sends. Each thread cycles through the viewers' tokens, so that most requests check
-- a token again, as Flussonic does on update_session. Env: STREAM_TOKENS_FILE
-- (one stream token per line, for stream "bench").
dofile(os.getenv('PEER_BENCH_DIR') .. '/lua/common.lua')

function init(args)
  tokens = {}
  for line in io.lines(env('STREAM_TOKENS_FILE')) do
    if line ~= '' then table.insert(tokens, line) end
  end
  -- Threads start apart in the list, so that they do not ask about the same viewer together.
  n = (thread_index or 1) * 97
end

function request()
  n = n + 1
  local token = tokens[(n % #tokens) + 1]
  return wrk.format('GET', '/api/stream-auth?name=bench&token=' .. token ..
    '&ip=10.0.0.' .. (n % 250) .. '&proto=hls&request_type=update_session&request_number=' .. n ..
    '&session_id=6217fd62-16da-4206-9da9-0173d7552a14&stream_clients=1&total_clients=2' ..
    '&type=hls&media_request=hls_live-hls_mbr_playlist', nil, nil)
end

function response(status, headers, body)
  if status == 200 and (headers['x-authduration'] or headers['X-AuthDuration']) == nil then
    unparsed = unparsed + 1
  end
end
