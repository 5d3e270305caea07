/*
 * worker_lua.h: chat_worker's Redis scripts, from the .lua files in lua/:
 * the Makefile runs ngx_chat_module/lua/embed.sh on them into
 * $(BUILD)/gen/worker_lua.c, so a .lua file is the only place a script is
 * written. worker_redis.c and worker_control.c load them
 * (worker_redis_link.c) and call them by their SHA1.
 */

#ifndef CHAT_WORKER_LUA_H
#define CHAT_WORKER_LUA_H


/* raises the delivered marks of partitions (lua/delivered.lua) */
extern const char  chat_lua_delivered[];
/* raises fields of chat:revoked, never lowers one (lua/revoked.lua) */
extern const char  chat_lua_revoked[];
/* a batch's delivery, fenced per partition: epochs, delivered marks,
 * chain heads and the PUBLISHes (lua/publish.lua) */
extern const char  chat_lua_publish[];
/* partitions taken: their epochs in, their delivered marks out
 * (lua/take.lua) */
extern const char  chat_lua_take[];


#endif /* CHAT_WORKER_LUA_H */
