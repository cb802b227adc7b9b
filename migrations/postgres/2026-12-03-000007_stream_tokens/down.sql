DROP TABLE stream_tokens;
