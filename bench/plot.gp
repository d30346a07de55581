# plot.gp — docs/bench-s1.png and docs/bench-s4.png from the sweeps of bench/run.sh.
# Called by bench/report.py as: gnuplot -e "raw='DIR'; docs='DIR'; nginx=RPS" bench/plot.gp
set terminal pngcairo size 900,560 font "DejaVu Sans,10" noenhanced
set grid
set key bottom right
set y2tics
set ytics nomirror
set logscale y2

set output docs.'/bench-s1.png'
set title 'S1 GET /api/v1/queue/status (embedded, WAITING tokens): paced load, 64 connections'
set xlabel 'offered load (requests/s)'
set ylabel 'achieved requests/s'
set y2label 'latency (ms, log scale)'
set yrange [0:*]
plot raw.'/s1-sweep.dat' using 1:2 with linespoints lw 2 title 'achieved req/s', \
     raw.'/s1-sweep.dat' using 1:3 axes x1y2 with linespoints title 'p50 latency', \
     raw.'/s1-sweep.dat' using 1:4 axes x1y2 with linespoints title 'p99 latency', \
     nginx with lines dt 2 title 'nginx static peak (wrk)'

set key top left
set output docs.'/bench-s4.png'
set title 'S4 flash crowd (embedded): users arriving per second for 5 s, 20 x 1,000 seats'
set xlabel 'offered load (users arriving per second)'
set ylabel 'paid bookings/s'
set y2label 'p99 latency (ms, log scale)'
set logscale x 2
plot raw.'/s4-sweep.dat' using 1:2 with linespoints lw 2 title 'paid bookings/s', \
     raw.'/s4-sweep.dat' using 1:3 axes x1y2 with linespoints title 'p99 hold', \
     raw.'/s4-sweep.dat' using 1:4 axes x1y2 with linespoints title 'p99 pay', \
     raw.'/s4-sweep.dat' using 1:5 axes x1y2 with linespoints title 'p99 issue'
