"""The trivial baseline of the Minetest recipe: hold `attack` (action 8) for every step, on the recipe's
real-game seeds 10000-10019 and 200-step episodes. Prints the returns (recorded in minetest_recipe.json)."""
import json
from concurrent.futures import ProcessPoolExecutor
from worldsim.agents.real_eval import score_on_real_env

KW = {"frame_size": 64, "world_seed": 1, "max_episode_steps": 200, "camera_step": 15.0}

def one(seeds):
    s = score_on_real_env(lambda obs: 8, "minetest", KW, len(seeds), seed=seeds[0])
    return list(map(float, s.returns))

if __name__ == "__main__":
    with ProcessPoolExecutor(2) as pool:
        parts = list(pool.map(one, [list(range(10000, 10010)), list(range(10010, 10020))]))
    returns = parts[0] + parts[1]
    print(json.dumps({"returns": returns, "mean": sum(returns) / len(returns)}))
