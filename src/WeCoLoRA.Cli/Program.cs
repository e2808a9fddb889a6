Console.WriteLine(WeCoLoRA.Smoke.Hello());
