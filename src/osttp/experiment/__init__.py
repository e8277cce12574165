"""The application on top of the library: runs on disk, from a config to results, summaries and plots.

One module per job:

    config      the declared schema of every config key (kinds, bounds, choices, flags), checking, resolution
    tomlio      TOML in and out
    build       a validated run from a config (Setup: data, network, backend, learner); writes nothing
    backend     where weights live: FloatBackend (torch optimizer) or HardwareBackend (simulated synapses)
    evaluate    a split's metrics and the drift curve with the run's [eval] settings
    loop        training one run with checkpoints, resume and the final test
    checkpoint  atomic files, JSON, checkpoints loaded with weights_only=True
    results     results.json
    rundir      run and compare directories: new, resumed, read back
    compare     several rules and seeds, then a summary
    report      summary tables, markdown, learning-curve and drift plots of finished runs
    progress    a live bar on a terminal, plain lines in a log
    cli         `osttp ...`: argparse built from config.SCHEMA, exit codes

The library (osttp.cells, rules, network, tasks, hardware, evaluation, plots, checks) never imports it.
"""
