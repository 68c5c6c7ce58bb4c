"""The 1-D/2-D toy functions optimizers race on (`lit_opt toy`, the app's Playground), by name,
importable without torch; lit_opt/toy.py holds their formulas, start points and windows."""

TOY_FUNCTIONS: dict[str, str] = {
    "bowl": "f = x^2 + y^2, a round bowl",
    "ill_bowl": "f = (x^2 + 50 y^2) / 2, condition number 50",
    "rosenbrock": "(1-x)^2 + 100 (y-x^2)^2, a curved narrow valley",
    "rastrigin": "10n + sum(x^2 - 10 cos 2 pi x), many local minima",
    "beale": "Beale's function, flat plateaus and sharp ridges",
    "x2": "f(x) = x^2, the seed's first example",
}
