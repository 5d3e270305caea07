
/*
 * The module's Redis scripts, from the .lua files in lua/: config runs
 * lua/embed.sh at configure time into the objs directory, so a .lua file
 * is the only place a script is written.
 */


#ifndef _NGX_CHAT_LUA_H_INCLUDED_
#define _NGX_CHAT_LUA_H_INCLUDED_


extern const char  ngx_chat_lua_registry_add[];
extern const char  ngx_chat_lua_registry_remove[];
extern const char  ngx_chat_lua_registry_alive[];
extern const char  ngx_chat_lua_registry_sweep[];
extern const char  ngx_chat_lua_registry_due[];
extern const char  ngx_chat_lua_registry_gone[];
extern const char  ngx_chat_lua_presence_query[];
extern const char  ngx_chat_lua_presence_set[];
extern const char  ngx_chat_lua_typing[];


#endif /* _NGX_CHAT_LUA_H_INCLUDED_ */
