# Threads that build and drop strings, the setting of the "malloc doubles Ruby
# memory" reports (Sidekiq, Puma): each thread makes batches of strings of
# 64..4 KiB (their bytes live in malloc'd buffers), keeps one string of each
# batch and drops the rest; Ruby's GC frees them on whichever thread it runs.
THREADS = 4
ROUNDS = 40
threads = THREADS.times.map do
  Thread.new do
    kept = []
    ROUNDS.times do |round|
      batch = Array.new(2000) { |i| "x" * (64 + (i * 37 + round) % 4000) }
      kept << batch[round % 2000]
    end
    kept.size
  end
end
puts threads.map(&:value).sum
