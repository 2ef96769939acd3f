"""The pipeline's own components and executors: data in (ExampleGen), the contract's schema gate, the ranking
Evaluator and the Pusher."""
