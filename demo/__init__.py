"""Guidance Lab, in layers; imports point down only (tests/test_layers.py checks it):

    engine/    torch only: networks, noise levels, samplers, guidance, batching, pipeline, checkpoints, metrics
    toy/       the exact 2-D Gaussian mixture (the tests' oracle) and the app's 2-D lab
    science/   data, training, evaluation, the guide and solver studies (offline commands; results in assets/)
    serving/   what `python app.py` runs besides the UI: scheduler, service and cache, compute thread, outputs,
               settings, start-up, request guard, weights source
    ui/        one module per tab (layout, wiring and handlers together), the endpoints' contract, views, prose
    tools/     one app launcher; bench, classroom load test, screenshots, publishing the weights

`python -m demo.train` and `python -m demo.bench` are the two commands kept at this level (the project's brief
names them); every other command is `python -m demo.<layer>.<module>`.
"""
