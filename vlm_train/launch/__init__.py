"""Driver side: what a job asks of the cluster (plan), the Ray connection (ray_env), one
training stage on Ray Train (trainer), the tiny base model (base_model), remote evaluation
(evaluate), the report (report), and the one driver over ``stages`` (pipeline) behind every job (cli)."""
