// The distillation-step benchmark lands here with the performance issue; `wecolora bench` will call it.
Console.WriteLine("WeCoLoRA.Bench: no benchmarks yet.");
