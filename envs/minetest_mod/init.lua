-- worldsim_bridge: the world mod of worldsim's Minetest env (worldsim/envs/minetest.py).
--
-- Every server step it writes the player's state to <world>/worldsim/state.txt (atomically, with
-- minetest.safe_file_write), and it runs the commands the env writes to <world>/worldsim/cmd.txt.
-- Both are plain "key value..." lines. A command file holds "seq N" and then one command per line;
-- each file is run once, and the state carries "ack N" from then on, so the env knows it ran.
--
-- Commands:  pose x y z yaw pitch    teleport the player (feet position) and set the look (radians)
--            node x y z name         set a node ("air" removes it); remembered and undone by reset
--            reset x y z yaw pitch   undo every node change since the last reset, empty the
--                                    inventory, give the task's tool, zero the wood count, then pose
--            time t                  time of day in [0, 1) (0.5 = noon); time does not run on its own
--            start r                 find every tree within r nodes of the spawn point (loading the
--                                    map there first) and report standing poses facing their trunks
--                                    as "starts n x y z yaw pitch ..." in the state, nearest first
-- The task: "wood" counts tree nodes (group:tree) the player digs.

local dir = minetest.get_worldpath() .. "/worldsim"
minetest.mkdir(dir)
local state_path, cmd_path = dir .. "/state.txt", dir .. "/cmd.txt"
local TOOL = "default:axe_diamond"
local REACH = 4.0

local ack, wood, server_step = -1, 0, 0
local spawn = nil  -- where the player first appeared
local starts = nil  -- "n x y z yaw pitch ..." once a start search has finished
local changed = {}  -- pos hash -> the node found there before this episode first changed it

local function remember(pos, oldnode)
    local h = minetest.hash_node_position(pos)
    if changed[h] == nil then
        changed[h] = {pos = vector.new(pos), node = {name = oldnode.name, param1 = oldnode.param1, param2 = oldnode.param2}}
    end
end

minetest.register_on_dignode(function(pos, oldnode, digger)
    remember(pos, oldnode)
    if digger and digger:is_player() and minetest.get_item_group(oldnode.name, "tree") > 0 then
        wood = wood + 1
    end
end)
minetest.register_on_placenode(function(pos, newnode, placer, oldnode)
    remember(pos, oldnode)
end)

local function player()
    return minetest.get_connected_players()[1]
end

local function set_pose(p, x, y, z, yaw, pitch)
    p:set_pos({x = x, y = y, z = z})
    p:set_velocity({x = 0, y = 0, z = 0})
    p:set_look_horizontal(yaw)
    p:set_look_vertical(pitch)
end

local function walkable(pos)
    local def = minetest.registered_nodes[minetest.get_node(pos).name]
    return def ~= nil and def.walkable
end

local function free(pos)
    local name = minetest.get_node(pos).name
    local def = minetest.registered_nodes[name]
    return name == "air" or (def ~= nil and not def.walkable and def.liquidtype == "none")
end

-- Standing poses 3 (else 2) nodes from the base of each trunk, on firm ground with headroom, facing it.
local function tree_starts(radius)
    local c = vector.round(spawn)
    local pmin, pmax = vector.subtract(c, {x = radius, y = 16, z = radius}), vector.add(c, {x = radius, y = 16, z = radius})
    local found = {}
    for _, pos in ipairs(minetest.find_nodes_in_area(pmin, pmax, {"group:tree"})) do
        local below = vector.add(pos, {x = 0, y = -1, z = 0})
        if minetest.get_item_group(minetest.get_node(below).name, "tree") == 0 and walkable(below) then
            for _, d in ipairs({{x = 3, z = 0}, {x = -3, z = 0}, {x = 0, z = 3}, {x = 0, z = -3},
                                {x = 2, z = 0}, {x = -2, z = 0}, {x = 0, z = 2}, {x = 0, z = -2}}) do
                local stand = {x = pos.x + d.x, y = pos.y, z = pos.z + d.z}
                local clear = walkable(vector.add(stand, {x = 0, y = -1, z = 0}))
                local len = math.abs(d.x + d.z)
                for k = 1, len do  -- the stand and the way to the trunk: two nodes of headroom
                    local q = {x = pos.x + d.x * k / len, y = pos.y, z = pos.z + d.z * k / len}
                    clear = clear and free(q) and free(vector.add(q, {x = 0, y = 1, z = 0}))
                end
                if clear then
                    -- Minetest's yaw is 0 facing +z and grows counter-clockwise seen from above
                    local yaw = math.atan2(-(pos.x - stand.x), pos.z - stand.z) % (2 * math.pi)
                    local dist = vector.distance(c, stand)
                    found[#found + 1] = {dist, string.format("%.1f %.1f %.1f %.6f 0.200000", stand.x, stand.y - 0.5, stand.z, yaw)}
                    break
                end
            end
        end
    end
    table.sort(found, function(a, b) return a[1] < b[1] end)
    local out = {"starts " .. #found}
    for _, f in ipairs(found) do out[#out + 1] = f[2] end
    return table.concat(out, " ")
end

local function run(line, p)
    local words = {}
    for w in line:gmatch("%S+") do words[#words + 1] = w end
    local cmd, n = words[1], function(i) return tonumber(words[i]) end
    if cmd == "pose" then
        set_pose(p, n(2), n(3), n(4), n(5), n(6))
    elseif cmd == "node" then
        local pos = {x = n(2), y = n(3), z = n(4)}
        remember(pos, minetest.get_node(pos))
        minetest.set_node(pos, {name = words[5]})
    elseif cmd == "reset" then
        for _, c in pairs(changed) do minetest.set_node(c.pos, c.node) end
        changed, wood = {}, 0
        local inv = p:get_inventory()
        inv:set_list("main", {})
        inv:set_list("craft", {})
        inv:add_item("main", TOOL)
        p:set_hp(p:get_properties().hp_max)
        set_pose(p, n(2), n(3), n(4), n(5), n(6))
    elseif cmd == "start" then
        local r = n(2)
        starts = nil
        local c = vector.round(spawn)
        -- load beyond the search area: trees near its edge can come from the neighbouring mapblocks
        local m = r + 32
        minetest.emerge_area(vector.subtract(c, {x = m, y = 32, z = m}), vector.add(c, {x = m, y = 32, z = m}),
            function(blockpos, action, remaining)
                if remaining == 0 then starts = tree_starts(r) end
            end)
    elseif cmd == "time" then
        minetest.set_timeofday(n(2))
    else
        minetest.log("error", "worldsim_bridge: unknown command " .. line)
    end
end

local function read_commands(p)
    local f = io.open(cmd_path, "r")
    if not f then return end
    local text = f:read("*a")
    f:close()
    local seq = tonumber(text:match("^seq (%-?%d+)"))
    if not seq or seq <= ack then return end
    for line in text:gmatch("[^\n]+") do
        if not line:match("^seq ") then run(line, p) end
    end
    ack = seq
end

-- The node the player points at: the first node along the look ray within reach, as the client's
-- own pointing does (liquids and air are not pointable).
local function pointed(p)
    local eye = vector.add(p:get_pos(), {x = 0, y = p:get_properties().eye_height, z = 0})
    local ray = minetest.raycast(eye, vector.add(eye, vector.multiply(p:get_look_dir(), REACH)), false, false)
    for thing in ray do
        if thing.type == "node" then return thing.under, minetest.get_node(thing.under).name end
    end
    return nil, "none"
end

local function kind(name)
    if name == "none" then return "none" end
    for _, g in ipairs({"tree", "leaves", "wood", "sand", "soil", "stone", "wool", "flora"}) do
        if minetest.get_item_group(name, g) > 0 then return g end
    end
    return "other"
end

minetest.register_on_joinplayer(function(p)
    spawn = p:get_pos()
    p:hud_set_flags({hotbar = false, healthbar = false, crosshair = false, wielditem = false,
                     breathbar = false, minimap = false, minimap_radar = false})
    p:get_inventory():add_item("main", TOOL)
end)

minetest.register_globalstep(function(dtime)
    server_step = server_step + 1
    local p = player()
    if not p then return end
    read_commands(p)
    local pos = p:get_pos()
    local under, name = pointed(p)
    local u = under or {x = 0, y = 0, z = 0}
    minetest.safe_file_write(state_path, table.concat({
        "ack " .. ack,
        "step " .. server_step,
        string.format("pos %.4f %.4f %.4f", pos.x, pos.y, pos.z),
        string.format("look %.6f %.6f", p:get_look_horizontal(), p:get_look_vertical()),
        string.format("pointed %d %d %d %s %s", u.x, u.y, u.z, name, kind(name)),
        "wood " .. wood,
        "hp " .. p:get_hp(),
        string.format("time %.4f", minetest.get_timeofday()),
        starts or "starts -1",
    }, "\n") .. "\n")
end)
