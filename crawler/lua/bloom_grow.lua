-- bloom_grow.lua: allocate a Bloom layer the seen-set is about to need, in a
-- call of its own. commit.lua never allocates: it asks for the layer
-- ({-2, layer, bytes}) before it writes anything, so a failed or slow
-- allocation (up to 512 MB) never leaves a commit half done, and the commit
-- that follows is as quick as any other.
--
-- KEYS[1] {N}:bloom (metadata)   KEYS[2] {N}:bloom:<layer>
-- ARGV[1] the layer (1, 2, ...)  ARGV[2] its size in bytes
--
-- Returns 1 if the layer is allocated (now or before), 0 if it is in use
-- already (another node made it and a commit took it into service).
local layer, size = tonumber(ARGV[1]), tonumber(ARGV[2])
if tonumber(redis.call('HGET', KEYS[1], 'layers') or '0') >= layer then return 0 end
if redis.call('STRLEN', KEYS[2]) == size then return 1 end
-- Exactly its size: grown bit by bit, Redis would over-allocate the string.
redis.call('SET', KEYS[2], string.rep('\0', size))
return 1
