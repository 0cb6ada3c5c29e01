#!/usr/bin/env python3
"""Read latency of a grown topic's users against one-partition reads, in the same run.

Starts nisshi (memory engine), herald-producer and two herald-consumers with
HERALD_PARTITION_HISTORY=3,6 on a 6-partition topic, sends 250 notifications to a user whose two
partitions are held by different consumers and 250 to a user whose mappings agree, and prints
p50/p99 of 2,000 sequential keep-alive GETs per case, twice. Needs the release binaries
(`cargo build --release --workspace --bins`) and nisshi on PATH:
    python3 tests/merged_reads.py
"""
import http.client, json, time, subprocess, os, socket, tempfile, sys
R=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/herald-target")), "release", "")
def free():
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close(); return p
def murmur2(data):
    seed=0x9747b28c; m=0x5bd1e995; h=(seed ^ len(data)) & 0xffffffff; i=0
    while len(data)-i>=4:
        k=int.from_bytes(data[i:i+4],'little'); k=(k*m)&0xffffffff; k^=k>>24; k=(k*m)&0xffffffff
        h=(h*m)&0xffffffff; h^=k; i+=4
    t=data[i:]
    if len(t)>=3: h^=t[2]<<16
    if len(t)>=2: h^=t[1]<<8
    if len(t)>=1: h^=t[0]; h=(h*m)&0xffffffff
    h^=h>>13; h=(h*m)&0xffffffff; h^=h>>15; return h
pfu=lambda u,n:(murmur2(str(u).encode())&0x7fffffff)%n
d=tempfile.mkdtemp(); bp=free(); procs=[]
env=dict(os.environ, LISTENER_URL=f"tcp://127.0.0.1:{bp}", ADVERTISED_LISTENER_URL=f"tcp://127.0.0.1:{bp}", STORAGE_ENGINE="memory://nisshi/")
procs.append(subprocess.Popen(["nisshi","broker"],cwd=d,env=env,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL))
time.sleep(1)
subprocess.run(["nisshi","topic","create","t","--partitions","6","--broker",f"tcp://127.0.0.1:{bp}"],cwd=d,check=True,stdout=subprocess.DEVNULL)
users=os.path.join(d,"users.json"); json.dump([{"id":i,"name":f"u{i}"} for i in range(1,101)],open(users,"w"))
common=dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{bp}", HERALD_TOPIC="t", RUST_LOG="warn", HERALD_PARTITION_HISTORY="3,6")
pp=free(); procs.append(subprocess.Popen([R+"herald-producer"],env=dict(common,HERALD_LISTEN=f"127.0.0.1:{pp}",HERALD_METRICS_LISTEN=f"127.0.0.1:{free()}",HERALD_USERS_FILE=users),stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL))
cports=[free(),free()]
for cp in cports:
    procs.append(subprocess.Popen([R+"herald-consumer"],env=dict(common,HERALD_LISTEN=f"127.0.0.1:{cp}",HERALD_METRICS_LISTEN=f"127.0.0.1:{free()}",HERALD_GROUP_ID="g",HERALD_ADVERTISE_URL=f"http://127.0.0.1:{cp}",HERALD_PEERS=",".join(f"127.0.0.1:{p}" for p in cports),HERALD_KAFKA_PROPERTIES="max.poll.interval.ms=10000,session.timeout.ms=6000,heartbeat.interval.ms=1000,fetch.wait.max.ms=5",HERALD_MAX_PER_USER="1000"),stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL))
def conn(p): return http.client.HTTPConnection("127.0.0.1",p)
def get(c,path):
    c.request("GET",path); r=c.getresponse(); return r.status, r.read()
try:
    deadline=time.time()+90
    while True:
        held={}
        try:
            for cp in cports:
                s,b=get(conn(cp),"/internal/claims")
                for p in json.loads(b)["partitions"]: held[p]=cp
        except Exception: pass
        if len(held)==6 and len(set(held.values()))==2: break
        assert time.time()<deadline, held
        time.sleep(0.3)
    while get(conn(pp),"/readyz")[0]!=200: time.sleep(0.2)
    split=next(u for u in range(1,101) if held[pfu(u,3)]!=held[pfu(u,6)])
    single=next(u for u in range(1,101) if pfu(u,3)==pfu(u,6))
    pc=conn(pp)
    for u in (split,single):
        for i in range(250):
            pc.request("POST","/send",body=f"fromID=1&toID={u}&message=m{i}",headers={"Content-Type":"application/x-www-form-urlencoded"}); r=pc.getresponse(); r.read(); assert r.status==200
    def run(cp,path,n=2000):
        c=conn(cp); lat=[]
        for _ in range(n):
            t=time.perf_counter(); s,b=get(c,path); lat.append((time.perf_counter()-t)*1000); assert s==200,(s,b[:200])
        lat.sort(); return lat[len(lat)//2], lat[int(len(lat)*0.99)]
    for _ in range(2):
        for name,cp,path in [
            ("one partition, holder, whole (250)", held[pfu(single,6)], f"/notifications/{single}"),
            ("one partition, forwarded, whole (250)", [c for c in cports if c!=held[pfu(single,6)]][0], f"/notifications/{single}"),
            ("grown user, merged, whole (250)", cports[0], f"/notifications/{split}"),
            ("grown user, merged, whole (250), other consumer", cports[1], f"/notifications/{split}"),
            ("one partition, holder, limit=20", held[pfu(single,6)], f"/notifications/{single}?limit=20"),
            ("grown user, merged, limit=20", cports[0], f"/notifications/{split}?limit=20"),
        ]:
            p50,p99=run(cp,path); print(f"{name}: p50 {p50:.2f} ms p99 {p99:.2f} ms", flush=True)
finally:
    for p in procs: p.terminate()
